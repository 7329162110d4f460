"use strict";
// The call centre's page: identify the caller by ticket number and birth
// date, see their profile and what comes next, book (held seats visible)
// and cancel for them. Outcomes are written to be read aloud.

(function () {
  const V = window.Vaxslot;
  const $ = (id) => document.getElementById(id);
  const wait = $("wait");
  const message = $("message");
  let keyForm = null;
  let caller = null; // { ticket_number, birth_date }
  let profile = null;
  let venues = new Map();
  let choice = null;
  let cancelling = null;

  function venueName(venueId) {
    const venue = venues.get(venueId);
    return venue ? venue.name : venueId;
  }

  function spoken(r) {
    return `${V.dateText(r.date)} ${V.timeText(r.time)}、${venueName(r.venue_id)}、${V.doseText(r.dose)}、${V.vaccineText(r.vaccine)}`;
  }

  // Every operator call: a refused key asks for the key again.
  async function operatorCall(options) {
    const answer = await V.call(Object.assign({ credential: keyForm.key(), waitNotice: wait }, options));
    if (!answer.ok && (answer.status === 401 || answer.status === 403)) {
      keyRefused(answer);
      return null;
    }
    return answer;
  }

  function keyRefused(answer) {
    $("caller").hidden = true;
    $("profile").hidden = true;
    keyForm.refused(answer);
  }

  function identity() {
    return new URLSearchParams({ ticket_number: caller.ticket_number, birth_date: caller.birth_date });
  }

  async function identify(event) {
    if (event) event.preventDefault();
    const form = $("caller-form");
    const ticket_number = V.digitsOnly(form.elements.ticket_number.value);
    const birth_date = V.normaliseBirthDate(form.elements.birth_date.value);
    if (ticket_number.length !== 10) {
      V.show(message, "bad", window.VaxslotMessages.invalid_ticket_number.what, [window.VaxslotMessages.invalid_ticket_number.todo]);
      return;
    }
    caller = { ticket_number, birth_date };
    await lookup();
  }

  async function lookup() {
    $("identify").disabled = true;
    const query = new URLSearchParams({ birth_date: caller.birth_date });
    const answer = await operatorCall({ path: `/v1/operator/residents/${encodeURIComponent(caller.ticket_number)}?${query}` });
    $("identify").disabled = false;
    if (!answer) return;
    if (!answer.ok) {
      $("profile").hidden = true;
      if (answer.problem.code === "not_found") {
        V.show(message, "bad", "接種券番号と生年月日が一致する方が見つかりません。", ["もう一度、接種券番号と生年月日をゆっくり確認してください。"]);
      } else {
        V.showProblem(message, answer);
      }
      return;
    }
    profile = answer.body;
    renderProfile();
    $("profile").hidden = false;
  }

  function renderProfile() {
    const next = profile.eligibility;
    const history = profile.history.map((h) => `${V.doseText(h.dose)} ${V.dateText(h.date, true)} ${V.vaccineText(h.vaccine)}`).join(" / ");
    V.fillFacts($("profile-facts"), [
      ["お名前", `${profile.name} 様`],
      ["生年月日", V.dateText(profile.birth_date, true)],
      ["接種歴", history || "なし"],
      ["次の接種", next ? `${V.doseText(next.next_dose)}(${next.vaccines.map(V.vaccineText).join("・")})を ${V.dateText(V.firstBookableDate(next), true)}以降` : "新しく予約できる接種はありません"],
    ]);
    const list = $("reservations");
    V.clear(list);
    if (profile.reservations.length === 0) list.append(V.el("li", { text: "予約はありません。" }));
    for (const r of profile.reservations) {
      const item = V.el("li", { "data-reservation-id": r.reservation_id, "data-status": r.status }, [
        V.el("strong", { text: `${V.statusText(r.status)}: ${spoken(r)}` }),
        V.el("div", { class: "hint", text: `予約番号 ${r.reservation_id} / ${V.channelText(r.channel)}で予約` }),
      ]);
      if (r.status === "booked") {
        const button = V.el("button", { type: "button", class: "secondary", text: "取り消す", "aria-label": `${V.doseText(r.dose)}の予約を取り消す` });
        button.addEventListener("click", () => askCancel(r));
        item.append(button);
      }
      list.append(item);
    }
    $("search-form").hidden = !next;
    if (next) {
      V.prepareSearch($("search-form"), next);
    }
    $("profile-title").focus();
  }

  async function search(event) {
    if (event) event.preventDefault();
    const credential = keyForm.key();
    const answer = await V.findSlots({ form: $("search-form"), button: $("search-button"), results: $("results"), venues, credential, showHeld: true, onChoose: choose, waitNotice: wait });
    if (answer.ok) return;
    if (answer.status === 401 || answer.status === 403) keyRefused(answer);
    else V.showProblem(message, answer);
  }

  function choose(day, time, accessCode) {
    choice = { venue_id: day.venue_id, date: day.date, time, dose: profile.eligibility.next_dose, vaccine: day.vaccine, access_code: accessCode || null, key: V.newIdempotencyKey() };
    const form = $("confirm-form");
    form.elements.venue_id.value = choice.venue_id;
    form.elements.time.value = choice.time;
    form.elements.dose.value = String(choice.dose);
    V.fillFacts($("confirm-facts"), [
      ["お名前", `${profile.name} 様`],
      ["会場", day.venue_name],
      ["日時", `${V.dateText(day.date, true)} ${V.timeText(time)}`],
      ["接種", V.doseText(choice.dose)],
      ["ワクチン", V.vaccineText(day.vaccine)],
    ]);
    form.hidden = false;
    $("confirm-title").focus();
  }

  async function book(event) {
    event.preventDefault();
    if (!choice || !caller) return;
    $("book").disabled = true;
    const body = Object.assign({ venue_id: choice.venue_id, date: choice.date, time: choice.time, dose: choice.dose, access_code: choice.access_code }, caller);
    const answer = await operatorCall({ method: "POST", path: "/v1/operator/reservations", body, headers: { "idempotency-key": choice.key } });
    $("book").disabled = false;
    if (!answer) return;
    $("confirm-form").hidden = true;
    choice = null;
    if (answer.ok) {
      const r = answer.body;
      V.show(message, "ok", "予約できました。", [`${spoken(r)}です。`, `予約番号の末尾は ${r.reservation_id.slice(-4)} です。`]);
      V.clear($("results"));
      await lookup();
      return;
    }
    V.showProblem(message, answer);
    if (answer.problem.code === "slot_full") await search();
  }

  function askCancel(reservation) {
    cancelling = reservation;
    const cascade = V.cascadeOf(profile.reservations, reservation);
    const summary = $("cancel-summary");
    V.clear(summary);
    summary.append(V.el("p", { text: `${spoken(reservation)} の予約を取り消します。` }));
    if (cascade.length > 0) {
      summary.append(V.el("p", { class: "notice warn", text: `続く次の予約もあわせて取り消されます: ${cascade.map(spoken).join(" / ")}` }));
    }
    $("cancel-confirm").hidden = false;
    $("cancel-title").focus();
  }

  async function cancel() {
    if (!cancelling) return;
    const reservation = cancelling;
    $("cancel-yes").disabled = true;
    const answer = await operatorCall({ method: "DELETE", path: `/v1/operator/reservations/${encodeURIComponent(reservation.reservation_id)}?${identity()}` });
    $("cancel-yes").disabled = false;
    if (!answer) return;
    $("cancel-confirm").hidden = true;
    cancelling = null;
    if (!answer.ok) {
      V.showProblem(message, answer);
      return;
    }
    V.show(message, "ok", "取り消しました。", V.cancelledBy(answer).map((r) => `${spoken(r)} を取り消しました。`));
    await lookup();
  }

  function nextCaller() {
    caller = null;
    profile = null;
    choice = null;
    $("caller-form").reset();
    $("profile").hidden = true;
    V.clear($("results"));
    V.show(message, "", null);
    $("ticket_number").focus();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    keyForm = V.keyForm({
      form: $("key-form"),
      notice: message,
      storageName: "vaxslot.operator.key",
      onReady: () => {
        $("caller").hidden = false;
        $("ticket_number").focus();
      },
    });
    $("caller-form").addEventListener("submit", identify);
    $("next-caller").addEventListener("click", nextCaller);
    $("change-key").addEventListener("click", () => {
      nextCaller();
      $("caller").hidden = true;
      keyForm.refused(null);
    });
    $("search-form").addEventListener("submit", search);
    $("confirm-form").addEventListener("submit", book);
    $("confirm-back").addEventListener("click", () => {
      choice = null;
      $("confirm-form").hidden = true;
    });
    $("cancel-yes").addEventListener("click", cancel);
    $("cancel-no").addEventListener("click", () => {
      cancelling = null;
      $("cancel-confirm").hidden = true;
    });
    const answer = await V.call({ path: "/v1/venues", waitNotice: wait });
    if (answer.ok) venues = new Map(answer.body.venues.map((v) => [v.venue_id, v]));
  });
})();
