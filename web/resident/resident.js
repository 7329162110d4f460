"use strict";
// The resident's page: log in, see what may be booked next, find a slot,
// book it after a confirmation, see and cancel reservations.

(function () {
  const V = window.Vaxslot;
  const session = V.keyStore("vaxslot.resident.session");

  const $ = (id) => document.getElementById(id);
  const wait = $("wait");
  const message = $("message");
  let profile = null;
  let venues = new Map();
  let choice = null; // the slot being confirmed, with its Idempotency-Key
  let cancelling = null; // the reservation being cancelled

  function token() {
    const kept = session.get();
    if (!kept) return null;
    const { token, expires_at } = JSON.parse(kept);
    if (Date.parse(expires_at) <= Date.now()) return null;
    return token;
  }

  // Every resident call: a missing or expired token returns to the login.
  async function residentCall(options) {
    const credential = token();
    if (!credential) {
      expired();
      return null;
    }
    const answer = await V.call(Object.assign({ credential, waitNotice: wait }, options));
    if (!answer.ok && answer.status === 401) {
      expired();
      return null;
    }
    return answer;
  }

  function expired() {
    const hadSession = session.get() !== null;
    session.forget();
    showLogin();
    if (hadSession) {
      V.show(message, "warn", "ログインの有効期限が切れました。", ["お手数ですが、もう一度ログインしてください。"]);
    }
  }

  function showLogin() {
    profile = null;
    $("login").hidden = false;
    $("account").hidden = true;
    $("search").hidden = true;
    $("confirm").hidden = true;
    V.clear($("results"));
    $("ticket_number").focus();
  }

  async function login(event) {
    event.preventDefault();
    const form = event.target;
    const ticket_number = V.digitsOnly(form.elements.ticket_number.value);
    const birth_date = V.normaliseBirthDate(form.elements.birth_date.value);
    if (ticket_number.length !== 10) {
      V.show(message, "bad", window.VaxslotMessages.invalid_ticket_number.what, [window.VaxslotMessages.invalid_ticket_number.todo]);
      form.elements.ticket_number.focus();
      return;
    }
    $("login-button").disabled = true;
    const answer = await V.call({ method: "POST", path: "/v1/sessions", body: { ticket_number, birth_date }, waitNotice: wait });
    $("login-button").disabled = false;
    if (!answer.ok) {
      V.showProblem(message, answer);
      return;
    }
    session.set(JSON.stringify(answer.body));
    form.reset();
    V.show(message, "", null);
    await loadProfile();
  }

  async function loadProfile() {
    const answer = await residentCall({ path: "/v1/me" });
    if (!answer) return;
    if (!answer.ok) {
      V.showProblem(message, answer);
      return;
    }
    profile = answer.body;
    renderProfile();
    $("login").hidden = true;
    $("account").hidden = false;
    $("search").hidden = profile.eligibility === null;
  }

  function renderProfile() {
    $("resident-name").textContent = profile.name;
    const history = $("history");
    V.clear(history);
    if (profile.history.length === 0) history.append(V.el("li", { text: "まだ接種の記録はありません。" }));
    for (const record of profile.history) {
      history.append(V.el("li", { text: `${V.doseText(record.dose)}: ${V.dateText(record.date, true)} ${V.vaccineText(record.vaccine)}` }));
    }
    const next = profile.eligibility;
    const eligibility = $("eligibility");
    if (!next) {
      eligibility.textContent = "今、新しく予約できる接種はありません(予約済みか、予定の接種がすべて済んでいます)。";
    } else {
      const from = next.earliest_date > V.today() ? `${V.dateText(next.earliest_date, true)}以降` : "今日以降";
      eligibility.textContent = `${V.doseText(next.next_dose)}の接種を、${from}の日付で予約できます。ワクチン: ${next.vaccines.map(V.vaccineText).join("・")}`;
      V.prepareSearch($("search-form"), next);
    }
    renderReservations();
  }

  function venueName(venueId) {
    const venue = venues.get(venueId);
    return venue ? venue.name : venueId;
  }

  function renderReservations() {
    const list = $("reservations");
    V.clear(list);
    if (profile.reservations.length === 0) list.append(V.el("li", { text: "予約はまだありません。" }));
    for (const r of profile.reservations) {
      const item = V.el("li", { "data-reservation-id": r.reservation_id, "data-status": r.status }, [
        V.el("strong", { text: `${V.doseText(r.dose)} ${V.dateText(r.date, true)} ${V.timeText(r.time)}` }),
        V.el("div", { text: `${venueName(r.venue_id)} / ${V.vaccineText(r.vaccine)} / ${V.statusText(r.status)}` }),
        V.el("div", { class: "hint", text: `予約番号: ${r.reservation_id}` }),
      ]);
      if (r.status === "booked") {
        const button = V.el("button", { type: "button", class: "secondary", text: "この予約を取り消す", "aria-label": `この予約を取り消す(${V.doseText(r.dose)} ${V.dateText(r.date)})` });
        button.addEventListener("click", () => askCancel(r));
        item.append(button);
      }
      list.append(item);
    }
  }

  function reservationLine(r) {
    return `${V.doseText(r.dose)} ${V.dateText(r.date, true)} ${V.timeText(r.time)} ${venueName(r.venue_id)}`;
  }

  function askCancel(reservation) {
    cancelling = reservation;
    const cascade = V.cascadeOf(profile.reservations, reservation);
    const summary = $("cancel-summary");
    V.clear(summary);
    summary.append(V.el("p", { text: reservationLine(reservation) }));
    if (cascade.length > 0) {
      summary.append(V.el("p", { class: "notice warn", text: "この予約を取り消すと、続く次の予約もあわせて取り消されます:" }));
      const list = V.el("ul");
      for (const r of cascade) list.append(V.el("li", { text: reservationLine(r) }));
      summary.append(list);
    }
    $("cancel-confirm").hidden = false;
    $("cancel-title").focus();
  }

  async function cancel() {
    if (!cancelling) return;
    const reservation = cancelling;
    $("cancel-yes").disabled = true;
    const answer = await residentCall({ method: "DELETE", path: `/v1/reservations/${encodeURIComponent(reservation.reservation_id)}` });
    $("cancel-yes").disabled = false;
    if (!answer) return;
    $("cancel-confirm").hidden = true;
    cancelling = null;
    if (!answer.ok) {
      V.showProblem(message, answer);
      return;
    }
    V.show(message, "ok", "予約を取り消しました。", V.cancelledBy(answer).map(reservationLine));
    await loadProfile();
  }

  async function loadVenues() {
    const answer = await V.call({ path: "/v1/venues", waitNotice: wait });
    if (answer.ok) venues = new Map(answer.body.venues.map((v) => [v.venue_id, v]));
  }

  // A search is the public read (cacheable, up to a second old). After
  // `slot_full` the list must be as of now, so that search goes with the
  // resident's token: a read with a credential is built for its request.
  async function search(event, asOfNow) {
    if (event) event.preventDefault();
    const credential = asOfNow ? token() : null;
    const answer = await V.findSlots({ form: $("search-form"), button: $("search-button"), results: $("results"), venues, credential, showHeld: false, onChoose: choose, waitNotice: wait });
    if (!answer.ok) V.showProblem(message, answer);
  }

  function choose(day, time, accessCode) {
    const next = profile.eligibility;
    choice = { venue_id: day.venue_id, date: day.date, time, dose: next.next_dose, access_code: accessCode || null, key: V.newIdempotencyKey(), vaccine: day.vaccine, venue_name: day.venue_name };
    const form = $("confirm-form");
    form.elements.venue_id.value = choice.venue_id;
    form.elements.time.value = choice.time;
    form.elements.dose.value = String(choice.dose);
    const venue = venues.get(day.venue_id);
    V.fillFacts($("confirm-facts"), [
      ["会場", day.venue_name],
      ["住所", venue ? venue.address : ""],
      ["日付", V.dateText(day.date, true)],
      ["時間", V.timeText(time)],
      ["接種", V.doseText(choice.dose)],
      ["ワクチン", V.vaccineText(day.vaccine)],
    ]);
    $("search").hidden = true;
    $("confirm").hidden = false;
    $("confirm-title").focus();
  }

  async function book(event) {
    event.preventDefault();
    if (!choice) return;
    $("book").disabled = true;
    const body = { venue_id: choice.venue_id, date: choice.date, time: choice.time, dose: choice.dose, access_code: choice.access_code };
    const answer = await residentCall({ method: "POST", path: "/v1/reservations", body, headers: { "idempotency-key": choice.key } });
    $("book").disabled = false;
    if (!answer) return;
    if (answer.ok) {
      const r = answer.body;
      V.show(message, "ok", "予約が完了しました。", [
        `${choice.venue_name} ${V.dateText(r.date, true)} ${V.timeText(r.time)}`,
        `${V.doseText(r.dose)} ${V.vaccineText(r.vaccine)}`,
        `予約番号: ${r.reservation_id}`,
      ]);
      choice = null;
      $("confirm").hidden = true;
      V.clear($("results"));
      await loadProfile();
      message.scrollIntoView();
      return;
    }
    V.showProblem(message, answer);
    if (answer.problem.code === "slot_full") {
      choice = null;
      $("confirm").hidden = true;
      $("search").hidden = false;
      await search(null, true);
    }
  }

  function back() {
    choice = null;
    $("confirm").hidden = true;
    $("search").hidden = false;
  }

  function logout() {
    session.forget();
    V.show(message, "ok", "ログアウトしました。", []);
    showLogin();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("login-form").addEventListener("submit", login);
    $("search-form").addEventListener("submit", search);
    $("confirm-form").addEventListener("submit", book);
    $("confirm-back").addEventListener("click", back);
    $("cancel-yes").addEventListener("click", cancel);
    $("cancel-no").addEventListener("click", () => {
      cancelling = null;
      $("cancel-confirm").hidden = true;
    });
    $("logout").addEventListener("click", logout);
    await loadVenues();
    if (token()) await loadProfile();
    else showLogin();
  });
})();
