//! The change streams that several processes on one Redis follow
//! (`cluster/follow.rs`): every import, venue and day plan is written with
//! an entry on its own stream, in one transaction on its hash's slot; every
//! venue-day batch with an entry on its partition's stream, by `commit.lua`
//! (and its undoing by `abandon.lua`), in the same script call. Entries
//! name what changed: a batch's reservation ids, an import's tickets (one
//! per line), and a follower reads the records from where they are stored
//! (in the AOF, a batch's entry is 2 KB, not its 25 KB of records again);
//! venues, day plans and an undone batch's records are carried as JSON
//! (compact JSON has no raw newline).

use std::collections::BTreeMap;

use ::redis::{Cmd, RedisError};

use super::{
    REDIS_SCAN_PAGE, RESIDENTS, RedisStore, VenueDayKeys, decode, limited, parse_day_field,
    unavailable,
};
use crate::domain::{ReservationId, Resident, VenueDayKey};
use crate::store::{
    CHANGES_READ_MAX, Change, ChangeCursor, ChangesRead, KILL_SWITCH_PARTITIONS, StoreError,
};

/// Imports: each entry the tickets of one call (`tickets`, one per line;
/// followers read the residents from the hash), written by
/// `put_residents.lua` and kept as long as a partition's.
/// In the slot of `vaxslot:residents` (the tag is its key name).
pub(super) const RESIDENT_CHANGES: &str = "vaxslot:{vaxslot:residents}:changes";
const VENUE_CHANGES: &str = "vaxslot:{vaxslot:venues}:changes";
const DAY_CHANGES: &str = "vaxslot:{vaxslot:days}:changes";

/// Most entries the venue and day streams keep: a follower more than this
/// many changes behind reloads.
pub const CATALOG_CHANGES_KEPT: usize = 100;
/// Most entries read from a catalog stream at once (below what it keeps,
/// so that a full read is how a trimmed stream is noticed).
const CATALOG_READ_MAX: usize = 16;

const _: () = assert!(CATALOG_READ_MAX < CATALOG_CHANGES_KEPT);

/// A venue-day partition's change stream, under the partition's tag.
pub(super) fn of_partition(partition: u32) -> String {
    format!("vaxslot:{{vx{partition}}}:changes")
}

impl RedisStore {
    /// How long a stream keeps an entry, for the scripts' `MINID`.
    pub(super) fn changes_kept_ms(&self) -> u64 {
        super::millis(self.changes_kept)
    }
}

fn catalog_entry(stream: &str) -> Cmd {
    let mut xadd = ::redis::cmd("XADD");
    xadd.arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(CATALOG_CHANGES_KEPT)
        .arg("*");
    xadd
}

pub(super) fn venue_change(json: &str) -> Cmd {
    let mut xadd = catalog_entry(VENUE_CHANGES);
    xadd.arg("put").arg(json);
    xadd
}

pub(super) fn day_change(day: &str, json: &str) -> Cmd {
    let mut xadd = catalog_entry(DAY_CHANGES);
    xadd.arg("day").arg(day).arg("put").arg(json);
    xadd
}

/// Every stream, the catalog's first: a follower applies an import or a
/// day before the bookings that need them.
fn streams() -> (Vec<String>, Vec<String>) {
    let catalog = [RESIDENT_CHANGES, VENUE_CHANGES, DAY_CHANGES]
        .map(str::to_owned)
        .to_vec();
    let partitions = (0..KILL_SWITCH_PARTITIONS).map(of_partition).collect();
    (catalog, partitions)
}

/// A stream entry: its id and its fields.
type Entry = (String, Vec<(String, String)>);

/// `"<ms>-<seq>"` as numbers, to compare entry ids.
fn id_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

const NOTHING_READ: &str = "0-0";

impl RedisStore {
    /// `XRANGE` (or `XREVRANGE`) of `stream` from `from` to `to`, `count` at most.
    async fn range(
        &self,
        command: &str,
        stream: &str,
        (from, to): (&str, &str),
        count: usize,
    ) -> Result<Vec<Entry>, RedisError> {
        limited(
            ::redis::cmd(command)
                .arg(stream)
                .arg(from)
                .arg(to)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut self.following.clone()),
        )
        .await
    }

    /// The last entry of `stream`, or `0-0` when it has none.
    async fn stream_end(&self, stream: &str) -> Result<String, RedisError> {
        let last = self.range("XREVRANGE", stream, ("+", "-"), 1).await?;
        Ok(last
            .into_iter()
            .next()
            .map_or_else(|| NOTHING_READ.to_owned(), |(id, _)| id))
    }

    /// Up to `count` entries after `after`, and whether entries after it
    /// were trimmed before they were read.
    async fn read_stream(
        &self,
        stream: &str,
        after: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, bool), RedisError> {
        let start = if after == NOTHING_READ {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let entries = self.range("XRANGE", stream, (&start, "+"), count).await?;
        // Behind by a full read: was what follows `after` kept?
        let lost = if entries.len() == count && after != NOTHING_READ {
            let oldest = self.range("XRANGE", stream, ("-", "+"), 1).await?;
            oldest
                .first()
                .is_some_and(|(id, _)| id_order(id) > id_order(after))
        } else {
            false
        };
        Ok((entries, lost))
    }

    pub(super) async fn change_cursor_now(&self) -> Result<ChangeCursor, StoreError> {
        let (catalog, partitions) = streams();
        let all: Vec<String> = catalog.into_iter().chain(partitions).collect();
        let ends = limited(futures::future::try_join_all(
            all.iter().map(|stream| self.stream_end(stream)),
        ))
        .await
        .map_err(unavailable)?;
        Ok(ChangeCursor(all.into_iter().zip(ends).collect()))
    }

    pub(super) async fn read_changes_after(
        &self,
        after: &ChangeCursor,
    ) -> Result<ChangesRead, StoreError> {
        let (catalog, partitions) = streams();
        let mut read = ChangesRead {
            changes: Vec::new(),
            cursor: after.clone(),
            lost: false,
        };
        // The catalog's streams are read, and applied, before the
        // partitions': a booking read here was made after its import.
        for (group, count) in [(catalog, CATALOG_READ_MAX), (partitions, CHANGES_READ_MAX)] {
            let reads = limited(futures::future::try_join_all(group.iter().map(|stream| {
                let from = after.0.get(stream).map_or(NOTHING_READ, String::as_str);
                self.read_stream(stream, from, count)
            })))
            .await
            .map_err(unavailable)?;
            for (stream, (entries, lost)) in group.into_iter().zip(reads) {
                read.lost |= lost;
                if let Some((last, _)) = entries.last() {
                    read.cursor.0.insert(stream.clone(), last.clone());
                }
                // One entry that cannot be read is skipped (counted and
                // logged), never a stall of every change behind it.
                let parsed = entries
                    .into_iter()
                    .filter_map(|(_, fields)| readable(change_of(&stream, fields), "change_entry"))
                    .collect();
                read.changes.extend(self.resolve(parsed).await?);
            }
        }
        Ok(read)
    }
}

impl RedisStore {
    /// The changes `parsed` records, with the records their entries name
    /// read from the store: one pipeline for a stream's committed batches
    /// (one slot), one read per import.
    async fn resolve(&self, parsed: Vec<Parsed>) -> Result<Vec<Change>, StoreError> {
        let mut reads = ::redis::pipe();
        for entry in &parsed {
            if let Parsed::Committed { day, ids, .. } = entry {
                reads
                    .cmd("HMGET")
                    .arg(VenueDayKeys::of(day).reservations)
                    .arg(ids);
            }
        }
        let mut found: std::vec::IntoIter<Vec<Option<String>>> = if reads.is_empty() {
            Vec::new().into_iter()
        } else {
            limited(reads.query_async::<Vec<Vec<Option<String>>>>(&mut self.following.clone()))
                .await
                .map_err(unavailable)?
                .into_iter()
        };
        let mut changes = Vec::with_capacity(parsed.len());
        for entry in parsed {
            changes.push(match entry {
                Parsed::Change(change) => change,
                Parsed::Imported(tickets) => {
                    Change::Residents(self.residents_named(&tickets).await?)
                }
                Parsed::Committed {
                    day, owner_epoch, ..
                } => Change::Reservations {
                    day,
                    owner_epoch,
                    // As stored now: a later change may be in already, and a
                    // record an undone batch removed is gone (its undoing
                    // follows).
                    stored: found
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .filter_map(|json| readable(decode(&json, "reservation"), "reservation"))
                        .collect(),
                },
            });
        }
        Ok(changes)
    }

    /// The residents an import entry names, as the hash holds them now (a
    /// later import may have replaced some: the newer is what counts).
    async fn residents_named(&self, tickets: &[String]) -> Result<Vec<Resident>, StoreError> {
        let mut residents = Vec::with_capacity(tickets.len());
        for chunk in tickets.chunks(REDIS_SCAN_PAGE) {
            let found: Vec<Option<String>> = limited(
                ::redis::cmd("HMGET")
                    .arg(RESIDENTS)
                    .arg(chunk)
                    .query_async(&mut self.following.clone()),
            )
            .await
            .map_err(unavailable)?;
            residents.extend(
                found
                    .into_iter()
                    .flatten()
                    .filter_map(|json| readable(decode(&json, "resident"), "resident")),
            );
        }
        Ok(residents)
    }
}

/// What a follower does with a change entry or record it cannot read: it
/// skips it, counted (`vaxslot_change_records_skipped_total`) and logged
/// by kind only (the error may quote the record, which may name a
/// resident), so that one bad record never stops every process from
/// following the others. Whoever owns the record still serves it from the
/// store (a venue-day's owner loads its day from there).
fn readable<T>(read: Result<T, StoreError>, what: &'static str) -> Option<T> {
    match read {
        Ok(value) => Some(value),
        Err(_) => {
            metrics::counter!(crate::telemetry::CHANGE_RECORDS_SKIPPED_TOTAL, "what" => what)
                .increment(1);
            tracing::error!(what, "a changed record could not be read; skipped");
            None
        }
    }
}

/// A stream entry read: a change, or what names the records to read.
enum Parsed {
    Change(Change),
    /// An import's tickets.
    Imported(Vec<String>),
    /// A committed batch's reservation ids, on its day.
    Committed {
        day: VenueDayKey,
        ids: Vec<String>,
        owner_epoch: Option<u64>,
    },
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|line| !line.is_empty())
}

/// One stream entry as the change it records.
fn change_of(stream: &str, fields: Vec<(String, String)>) -> Result<Parsed, StoreError> {
    let fields: BTreeMap<String, String> = fields.into_iter().collect();
    let field = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| StoreError::Corrupt(format!("change entry without {name}")))
    };
    if stream == RESIDENT_CHANGES {
        let tickets = lines(field("tickets")?).map(str::to_owned).collect();
        return Ok(Parsed::Imported(tickets));
    }
    Ok(Parsed::Change(match stream {
        VENUE_CHANGES => Change::Venue(decode(field("put")?, "venue")?),
        DAY_CHANGES => Change::DayPlan(
            parse_day_field(field("day")?)?,
            decode(field("put")?, "day plan")?,
        ),
        _ => {
            let day = parse_day_field(field("day")?)?;
            let owner_epoch = match fields.get("epoch") {
                Some(epoch) => Some(
                    epoch
                        .parse()
                        .map_err(|_| StoreError::Corrupt("owner epoch".into()))?,
                ),
                None => None,
            };
            match fields.get("ids") {
                Some(ids) => {
                    let ids = lines(ids).map(str::to_owned).collect();
                    return Ok(Parsed::Committed {
                        day,
                        ids,
                        owner_epoch,
                    });
                }
                None => Change::Reverted {
                    day,
                    owner_epoch,
                    forgotten: lines(field("forget")?)
                        .map(|id| {
                            ReservationId::parse(id)
                                .ok_or_else(|| StoreError::Corrupt("reservation id".into()))
                        })
                        .collect::<Result<_, _>>()?,
                    restored: lines(field("revert")?)
                        .map(|line| decode(line, "reservation"))
                        .collect::<Result<_, _>>()?,
                },
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{DAYS, VENUES};
    use super::*;

    #[test]
    fn entry_ids_compare_as_numbers() {
        assert!(id_order("1700000000010-0") > id_order("1700000000009-5"));
        assert!(id_order("5-10") > id_order("5-9"));
    }

    #[test]
    fn each_stream_is_in_the_slot_of_what_it_follows() {
        // The tag of each catalog stream is its hash's own key name.
        for (stream, hash) in [
            (RESIDENT_CHANGES, RESIDENTS),
            (VENUE_CHANGES, VENUES),
            (DAY_CHANGES, DAYS),
        ] {
            assert!(stream.starts_with(&format!("vaxslot:{{{hash}}}")));
        }
        assert_eq!(of_partition(7), "vaxslot:{vx7}:changes");
    }

    fn entry(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_batch_entry_names_its_owner_epoch_when_written_with_one() {
        let stream = of_partition(3);
        let day = "nakano/2030-07-07";
        match change_of(
            &stream,
            entry(&[("day", day), ("ids", "a\nb"), ("epoch", "42")]),
        ) {
            Ok(Parsed::Committed {
                ids, owner_epoch, ..
            }) => assert_eq!((ids, owner_epoch), (vec!["a".into(), "b".into()], Some(42))),
            _ => panic!("a committed batch"),
        }
        // Entries written before epochs were recorded.
        assert!(matches!(
            change_of(&stream, entry(&[("day", day), ("ids", "a")])),
            Ok(Parsed::Committed {
                owner_epoch: None,
                ..
            })
        ));
        let undone = entry(&[("day", day), ("forget", ""), ("revert", ""), ("epoch", "7")]);
        assert!(matches!(
            change_of(&stream, undone),
            Ok(Parsed::Change(Change::Reverted {
                owner_epoch: Some(7),
                ..
            }))
        ));
        let bad = entry(&[("day", day), ("ids", "a"), ("epoch", "x")]);
        assert!(matches!(
            change_of(&stream, bad),
            Err(StoreError::Corrupt(_))
        ));
    }
}
