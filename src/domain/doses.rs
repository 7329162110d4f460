//! Which doses count, per resident: pure functions over a resident's
//! received doses and reservations, used by every resident-state store.

use super::{Dose, DoseRecord, PriorDose, Reservation, ReservationId, ReservationStatus, Resident};

/// Is `dose` received, being booked (`pending`), or actively reserved?
/// Then it cannot be booked again.
pub fn dose_is_taken(
    resident: &Resident,
    reservations: &[Reservation],
    pending: &[Dose],
    dose: Dose,
) -> bool {
    resident.has_received(dose)
        || pending.contains(&dose)
        || reservations
            .iter()
            .any(|r| r.dose == dose && r.status.is_active())
}

/// The doses reserved (active reservations) or being booked.
pub fn reserved_doses<'a>(
    reservations: &'a [Reservation],
    pending: &'a [Dose],
) -> impl Iterator<Item = Dose> + 'a {
    reservations
        .iter()
        .filter(|r| r.status.is_active())
        .map(|r| r.dose)
        .chain(pending.iter().copied())
}

/// What the eligibility rules count as "dose N-1": doses received, and doses
/// booked (committed, and not being cancelled). A dose still being booked
/// is not a prior dose.
pub fn prior_doses(
    resident: &Resident,
    reservations: &[Reservation],
    being_cancelled: &[ReservationId],
) -> Vec<PriorDose> {
    let mut priors: Vec<PriorDose> = resident
        .history
        .iter()
        .map(|r| PriorDose {
            dose: r.dose,
            date: r.date,
            vaccine: r.vaccine,
        })
        .collect();
    for r in reservations {
        let counts = match r.status {
            ReservationStatus::Booked => !being_cancelled.contains(&r.id),
            // Checked in at the venue: received.
            ReservationStatus::Attended => true,
            ReservationStatus::Cancelled => false,
        };
        if counts && !priors.iter().any(|p| p.dose == r.dose) {
            priors.push(PriorDose {
                dose: r.dose,
                date: r.date,
                vaccine: r.vaccine,
            });
        }
    }
    priors
}

/// The doses received: the imported history and every checked-in
/// (attended) reservation, which is the durable record of a dose given at a
/// venue. In dose order.
pub fn received_history(resident: &Resident, reservations: &[Reservation]) -> Vec<DoseRecord> {
    let mut history = resident.history.clone();
    for r in reservations {
        if r.status == ReservationStatus::Attended && !history.iter().any(|h| h.dose == r.dose) {
            history.push(DoseRecord {
                dose: r.dose,
                date: r.date,
                vaccine: r.vaccine,
            });
        }
    }
    history.sort_by_key(|h| h.dose);
    history
}

/// Whether dose `dose` may be given now: dose 1 always, dose N only when
/// dose N-1 is received (never vaccinate dose 2 without dose 1).
pub fn prior_dose_received(history: &[DoseRecord], dose: Dose) -> bool {
    match dose.number() {
        1 => true,
        n => history.iter().any(|h| h.dose.number() == n - 1),
    }
}

/// What cancelling `target` cancels: it and every booked later dose, latest
/// dose first, so that a cascade cut short never leaves a later dose without
/// its earlier one. The asked-for reservation comes last.
pub fn cancel_cascade(reservations: &[Reservation], target: &Reservation) -> Vec<Reservation> {
    let mut chain: Vec<Reservation> = reservations
        .iter()
        .filter(|r| r.status == ReservationStatus::Booked && r.dose >= target.dose)
        .cloned()
        .collect();
    chain.sort_by_key(|r| std::cmp::Reverse(r.dose));
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Channel, SlotTime, TicketNumber, Vaccine, VenueId, parse_date, test_resident,
    };

    fn reservation(dose: u8, status: ReservationStatus) -> Reservation {
        let at = chrono::DateTime::parse_from_rfc3339("2030-06-01T09:00:00+09:00").unwrap();
        Reservation {
            id: ReservationId::random(),
            ticket_number: TicketNumber::parse("1311480001").unwrap(),
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: parse_date("2030-07-07").unwrap(),
            time: SlotTime::parse("10:00").unwrap(),
            dose: Dose::new(dose).unwrap(),
            vaccine: Vaccine::Moderna,
            status,
            channel: Channel::Web,
            created_at: at,
            updated_at: at,
            idempotency: None,
        }
    }

    #[test]
    fn a_cascade_takes_the_booked_later_doses_latest_first_and_the_target_last() {
        let one = reservation(1, ReservationStatus::Booked);
        let two = reservation(2, ReservationStatus::Booked);
        let three = reservation(3, ReservationStatus::Booked);
        let cancelled = reservation(4, ReservationStatus::Cancelled);
        let all = vec![two.clone(), one.clone(), cancelled, three.clone()];
        let chain: Vec<u8> = cancel_cascade(&all, &two)
            .iter()
            .map(|r| r.dose.number())
            .collect();
        assert_eq!(chain, vec![3, 2]);
        assert_eq!(cancel_cascade(&all, &one).len(), 3);
    }

    #[test]
    fn a_dose_being_cancelled_or_only_pending_is_no_prior_dose() {
        let resident = test_resident(TicketNumber::parse("1311480001").unwrap());
        let one = reservation(1, ReservationStatus::Booked);
        let list = vec![one.clone()];
        assert_eq!(prior_doses(&resident, &list, &[]).len(), 1);
        assert!(prior_doses(&resident, &list, &[one.id]).is_empty());
        assert!(dose_is_taken(&resident, &[], &[Dose::FIRST], Dose::FIRST));
        assert!(!dose_is_taken(&resident, &[], &[], Dose::FIRST));
        let attended = vec![reservation(1, ReservationStatus::Attended)];
        assert!(dose_is_taken(&resident, &attended, &[], Dose::FIRST));
        assert_eq!(
            prior_doses(&resident, &attended, &[]).len(),
            1,
            "attended is received"
        );
        let history = received_history(&resident, &attended);
        assert!(prior_dose_received(&history, Dose::new(2).unwrap()));
        assert!(!prior_dose_received(&[], Dose::new(2).unwrap()));
        assert!(prior_dose_received(&[], Dose::FIRST));
    }
}
