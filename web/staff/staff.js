"use strict";
// The venue tablet: a code field that takes a barcode scanner's keyboard
// input (digits, then Enter), an answer readable at a glance, and the day's
// roster with counts by status and a CSV download.

(function () {
  const V = window.Vaxslot;
  const $ = (id) => document.getElementById(id);
  const wait = $("wait");
  const message = $("message");
  // Wait after a check-in before the roster is fetched again, so that a
  // quick run of scans costs one roster read.
  const ROSTER_REFRESH_DELAY_MS = 800;
  const desk = V.keyStore("vaxslot.staff.desk");
  let keyForm = null;
  let where = null; // { venue_id, date }
  let roster = [];
  let refreshTimer = null;
  let venues = new Map();

  const STATUS_ORDER = ["booked", "attended", "no_show", "cancelled"];

  function rosterPath() {
    return `/v1/staff/venues/${encodeURIComponent(where.venue_id)}/days/${encodeURIComponent(where.date)}/roster`;
  }

  async function staffCall(options, key) {
    const answer = await V.call(Object.assign({ credential: key || keyForm.key(), waitNotice: wait }, options));
    if (!answer.ok && (answer.status === 401 || answer.status === 403) && !key) {
      $("desk").hidden = true;
      keyForm.refused(answer);
      return null;
    }
    return answer;
  }

  // The venues a tablet may choose: those its key may use (a tablet's key
  // may be limited to its own venue), central ones only.
  function offerVenues(list) {
    const select = $("venue_id");
    const chosen = select.value;
    select.replaceChildren();
    for (const v of list.filter((x) => x.booking === "central")) {
      select.append(V.el("option", { value: v.venue_id, text: v.name }));
    }
    if (list.some((v) => v.venue_id === chosen)) select.value = chosen;
  }

  // The key form's check: the venues this key may use, then the roster of
  // the chosen venue-day.
  async function probe(key) {
    const form = $("key-form");
    const usable = await staffCall({ path: "/v1/staff/venues" }, key);
    if (!usable || !usable.ok) return usable;
    offerVenues(usable.body.venues);
    // A key that may use no venue here: said as the key's refusal.
    if (!form.elements.venue_id.value) return { ok: false, status: 403, problem: { code: "forbidden" }, retryAfterS: null };
    where = { venue_id: form.elements.venue_id.value, date: form.elements.date.value };
    return staffCall({ path: rosterPath() }, key);
  }

  function ready(key, answer) {
    desk.set(JSON.stringify(where));
    $("desk-venue").textContent = venues.has(where.venue_id) ? venues.get(where.venue_id).name : where.venue_id;
    $("desk-date").textContent = V.dateText(where.date, true);
    $("desk").hidden = false;
    $("result").hidden = true;
    showRoster(answer.body.rows);
    $("code").focus();
  }

  async function refreshRoster() {
    const answer = await staffCall({ path: rosterPath() });
    if (answer && answer.ok) showRoster(answer.body.rows);
    else if (answer) V.showProblem(message, answer);
  }

  function showRoster(rows) {
    roster = rows;
    const counts = $("counts");
    V.clear(counts);
    counts.append(V.el("li", { "data-status": "all", text: `合計 ${rows.length}` }));
    for (const status of STATUS_ORDER) {
      const n = rows.filter((r) => r.status === status).length;
      counts.append(V.el("li", { "data-status": status, text: `${V.statusText(status)} ${n}` }));
    }
    const body = $("roster").tBodies[0];
    V.clear(body);
    for (const r of rows) {
      body.append(V.el("tr", { "data-reservation-id": r.reservation_id, "data-status": r.status }, [
        V.el("td", { text: r.time }),
        V.el("td", { text: r.name }),
        V.el("td", { text: V.doseText(r.dose) }),
        V.el("td", { text: V.vaccineText(r.vaccine) }),
        V.el("td", { text: V.statusText(r.status) }),
        V.el("td", { text: V.channelText(r.channel) }),
      ]));
    }
  }

  function showResult(ok, headline, detail) {
    const result = $("result");
    V.clear(result);
    result.className = `result ${ok ? "ok" : "bad"}`;
    result.append(document.createTextNode(headline));
    if (detail) result.append(V.el("span", { class: "detail", text: detail }));
    result.hidden = false;
  }

  async function checkIn(event) {
    event.preventDefault();
    const field = $("code");
    const code = V.digitsOnly(field.value);
    field.value = "";
    field.focus();
    if (!code) return;
    const answer = await staffCall({ method: "POST", path: "/v1/staff/checkins", body: { venue_id: where.venue_id, date: where.date, code } });
    if (!answer) return;
    if (answer.ok) {
      const r = answer.body;
      const row = roster.find((x) => x.reservation_id === r.reservation_id);
      showResult(true, `受付完了 — ${V.doseText(r.dose)}`, `${row ? `${row.name} 様 / ` : ""}${V.timeText(r.time)}の予約 / ${V.vaccineText(r.vaccine)}`);
    } else {
      const words = V.describeProblem(answer.problem, answer.retryAfterS);
      showResult(false, `受付できません — ${words.title}`, words.lines.join(" "));
    }
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshRoster, ROSTER_REFRESH_DELAY_MS);
  }

  async function download(event) {
    event.preventDefault();
    const answer = await staffCall({ path: rosterPath(), headers: { accept: "text/csv" } });
    if (!answer) return;
    if (!answer.ok) {
      V.showProblem(message, answer);
      return;
    }
    const blob = new Blob([answer.body], { type: "text/csv;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const link = V.el("a", { href: url, download: `roster-${where.venue_id}-${where.date}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const answer = await V.call({ path: "/v1/venues", waitNotice: wait });
    const select = $("venue_id");
    if (answer.ok) {
      venues = new Map(answer.body.venues.map((v) => [v.venue_id, v]));
      for (const v of answer.body.venues.filter((x) => x.booking === "central")) {
        select.append(V.el("option", { value: v.venue_id, text: v.name }));
      }
    } else {
      V.showProblem(message, answer);
    }
    const kept = desk.get();
    const form = $("key-form");
    form.elements.date.value = V.today();
    if (kept) {
      const { venue_id, date } = JSON.parse(kept);
      form.elements.venue_id.value = venue_id;
      form.elements.date.value = date;
    }
    keyForm = V.keyForm({ form, notice: message, storageName: "vaxslot.staff.key", probe, onReady: ready });
    $("checkin-form").addEventListener("submit", checkIn);
    $("refresh-roster").addEventListener("click", refreshRoster);
    $("download").addEventListener("click", download);
    $("change-desk").addEventListener("click", () => {
      $("desk").hidden = true;
      form.hidden = false;
      form.elements.venue_id.focus();
    });
  });
})();
