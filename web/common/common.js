"use strict";
// What every page shares: calling the API (problem documents, the automatic
// and polite retry of `overloaded`), Japanese wording of dates, doses and
// vaccines, and a few DOM helpers. No library, no build step.

(function () {
  // Most automatic retries of one request before the page gives up and
  // asks the person to try again.
  const AUTO_RETRIES_MAX = 8;
  // The longest a page waits between two automatic retries, in seconds.
  const AUTO_RETRY_WAIT_MAX_S = 30;
  // Codes that the server answers with `Retry-After` and that are safe to
  // send again by themselves (a booking carries its Idempotency-Key).
  const RETRIED_BY_ITSELF = ["overloaded", "store_unavailable", "change_in_progress", "idempotency_key_in_use"];

  const VACCINES = { pfizer: "ファイザー", moderna: "モデルナ" };
  const STATUSES = { booked: "予約済み", cancelled: "取り消し済み", attended: "接種済み", no_show: "来場なし" };
  const CHANNELS = { web: "インターネット", operator: "電話窓口" };
  const WEEKDAYS = ["日", "月", "火", "水", "木", "金", "土"];

  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, value);
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // "2026-12-03" → "12月3日(木)" (with the year when asked).
  function dateText(iso, withYear) {
    const [y, m, d] = iso.split("-").map(Number);
    const weekday = WEEKDAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
    return (withYear ? `${y}年` : "") + `${m}月${d}日(${weekday})`;
  }

  // "10:30" → "10時30分".
  function timeText(hhmm) {
    const [h, m] = hhmm.split(":").map(Number);
    return m === 0 ? `${h}時` : `${h}時${m}分`;
  }

  // Dates and times are the municipality's (API.md: Asia/Tokyo), whatever
  // the device's own time zone.
  const TOKYO = new Intl.DateTimeFormat("en-CA", {
    timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  // A moment as Tokyo's { date: "YYYY-MM-DD", time: "HH:MM" }.
  function tokyo(at) {
    const parts = Object.fromEntries(TOKYO.formatToParts(at).map((p) => [p.type, p.value]));
    return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
  }

  // An RFC 3339 timestamp (or a Date) → "12月1日(火) 9時".
  function momentText(moment) {
    const at = tokyo(new Date(moment));
    return `${dateText(at.date)} ${timeText(at.time)}`;
  }

  function today() {
    return tokyo(new Date()).date;
  }

  function addDays(iso, days) {
    const [y, m, d] = iso.split("-").map(Number);
    const at = new Date(Date.UTC(y, m - 1, d + days));
    return at.toISOString().slice(0, 10);
  }

  function vaccineText(vaccine) {
    return VACCINES[vaccine] || vaccine;
  }

  function statusText(status) {
    return STATUSES[status] || status;
  }

  function channelText(channel) {
    return CHANNELS[channel] || channel;
  }

  function doseText(dose) {
    return `${dose}回目`;
  }

  // Accepts 1950-04-01, 1950/4/1, 19500401 (full-width digits too).
  function normaliseBirthDate(text) {
    const ascii = text.trim().replace(/[０-９]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0));
    let match = ascii.match(/^(\d{4})\D+(\d{1,2})\D+(\d{1,2})\D*$/);
    if (!match) match = ascii.match(/^(\d{4})(\d{2})(\d{2})$/);
    if (!match) return ascii;
    return `${match[1]}-${match[2].padStart(2, "0")}-${match[3].padStart(2, "0")}`;
  }

  function digitsOnly(text) {
    return text.replace(/[０-９]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0)).replace(/\D/g, "");
  }

  // 128 random bits in hex (getRandomValues works on plain http too).
  function newIdempotencyKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // A problem in words: { title, lines[] }.
  function describeProblem(problem, retryAfterS) {
    const known = window.VaxslotMessages[problem.code];
    const lines = [];
    const title = known ? known.what : "うまくいきませんでした。";
    if (problem.code === "not_eligible" && problem.reason && window.VaxslotReasons[problem.reason]) {
      lines.push(window.VaxslotReasons[problem.reason]);
    } else if (known) {
      lines.push(known.todo);
    } else {
      lines.push("しばらくしてから、もう一度お試しください。");
    }
    if (problem.code === "booking_closed" && retryAfterS) {
      const at = tokyo(new Date(Date.now() + retryAfterS * 1000));
      lines.push(`${Math.ceil(retryAfterS / 60)}分ほど後(${timeText(at.time)}ごろ)に、もう一度お試しください。`);
    }
    if (problem.code === "too_many_attempts" && retryAfterS) {
      lines.push(`約${Math.ceil(retryAfterS / 60)}分後に、もう一度お試しいただけます。`);
    }
    if (problem.code === "not_open_yet" && problem.opens_at) {
      lines.push(`受付開始: ${momentText(problem.opens_at)}`);
    }
    return { title, lines };
  }

  // Shows a message in a notice element (`kind`: ok, bad, warn or "").
  function show(notice, kind, title, lines) {
    clear(notice);
    const sticky = notice.classList.contains("sticky");
    notice.className = `notice ${kind || ""}${sticky ? " sticky" : ""}`.trim();
    if (!title) return;
    notice.append(el("strong", { text: title }));
    for (const line of lines || []) notice.append(el("p", { text: line }));
    // A message out of sight is no message: bring it into view (the wait
    // notice is sticky, so it always is).
    if (!sticky) notice.scrollIntoView({ block: "start" });
  }

  function showProblem(notice, answer) {
    const words = describeProblem(answer.problem, answer.retryAfterS);
    show(notice, "bad", words.title, words.lines);
  }

  // Calls the API. Answers { ok, status, body, problem, retryAfterS }.
  // `overloaded` and the other "retry shortly" answers are sent again by
  // themselves, one at a time, waiting at least `Retry-After` (longer each
  // time, with jitter, so that a crowd of pages never retries in step),
  // while `waitNotice` shows a countdown.
  async function call(options) {
    const headers = Object.assign({ accept: "application/json" }, options.headers || {});
    if (options.credential) headers.authorization = `Bearer ${options.credential}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(options.path, {
          method: options.method || "GET",
          headers,
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          cache: "no-store",
        });
      } catch (error) {
        return { ok: false, status: 0, problem: { code: "store_unavailable" }, retryAfterS: null, offline: true };
      }
      const answer = await read(response);
      const retryable = !answer.ok && answer.problem && RETRIED_BY_ITSELF.includes(answer.problem.code);
      if (!retryable || options.retry === false || attempt >= AUTO_RETRIES_MAX) {
        if (options.waitNotice) show(options.waitNotice, "", null);
        return answer;
      }
      const base = Math.max(answer.retryAfterS || 1, 1);
      const waitS = Math.min(base * 2 ** Math.min(attempt, 4), AUTO_RETRY_WAIT_MAX_S) + Math.random();
      await countDown(options.waitNotice, answer, waitS);
    }
  }

  async function countDown(notice, answer, waitS) {
    const until = Date.now() + waitS * 1000;
    const words = describeProblem(answer.problem, answer.retryAfterS);
    for (;;) {
      const leftS = Math.ceil((until - Date.now()) / 1000);
      if (leftS <= 0) break;
      if (notice) {
        show(notice, "warn", words.title, [`あと ${leftS} 秒で、自動的にもう一度試します。`, "画面を閉じずにお待ちください。"]);
        notice.dataset.countdown = String(leftS);
      }
      await sleep(Math.min(250, until - Date.now()));
    }
    if (notice) {
      show(notice, "warn", "もう一度試しています…", []);
      delete notice.dataset.countdown;
    }
  }

  async function read(response) {
    const type = response.headers.get("content-type") || "";
    const retryAfter = Number(response.headers.get("retry-after"));
    const retryAfterS = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null;
    let body = null;
    if (type.includes("json")) {
      try {
        body = await response.json();
      } catch (error) {
        body = null;
      }
    } else if (type.includes("text/csv")) {
      // Kept as bytes: text() would drop the BOM a spreadsheet needs.
      body = await response.blob();
    } else {
      body = await response.text();
    }
    if (response.ok) return { ok: true, status: response.status, body, problem: null, retryAfterS };
    const problem = body && typeof body === "object" && body.code ? body : { code: "internal_error" };
    return { ok: false, status: response.status, body, problem, retryAfterS };
  }

  // A key kept only in this tab's sessionStorage (API.md "Web pages").
  function keyStore(name) {
    return {
      get: () => sessionStorage.getItem(name),
      set: (value) => sessionStorage.setItem(name, value),
      forget: () => sessionStorage.removeItem(name),
    };
  }

  // Wires a "key" form: checks the key with `probe` (a call that needs it)
  // and calls `onReady` once it works.
  function keyForm(options) {
    const store = keyStore(options.storageName);
    const form = options.form;
    const notice = options.notice;
    async function tryKey(key) {
      const answer = options.probe ? await options.probe(key) : { ok: true };
      if (answer.ok) {
        store.set(key);
        form.hidden = true;
        show(notice, "", null);
        options.onReady(key, answer);
        return;
      }
      store.forget();
      form.hidden = false;
      showProblem(notice, answer);
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = form.elements.key.value.trim() || store.get();
      if (key) tryKey(key);
    });
    const kept = store.get();
    if (kept) tryKey(kept);
    return {
      key: () => store.get(),
      // The key was refused by a later call: ask for it again.
      refused(answer) {
        store.forget();
        form.elements.key.value = "";
        form.hidden = false;
        if (answer) showProblem(notice, answer);
        form.elements.key.focus();
      },
    };
  }

  // How many days a date list offers, from the first bookable day.
  const DATE_CHOICES = 60;

  // Fills a date <select> with DATE_CHOICES days from `first` on.
  function fillDates(select, first) {
    if (select.dataset.first === first) return;
    select.dataset.first = first;
    clear(select);
    for (let i = 0; i < DATE_CHOICES; i += 1) {
      const date = addDays(first, i);
      select.append(el("option", { value: date, text: dateText(date, true) }));
    }
  }

  // The first day worth offering for what comes next (`eligibility`).
  function firstBookableDate(eligibility) {
    return eligibility && eligibility.earliest_date > today() ? eligibility.earliest_date : today();
  }

  // Sets a search form up for what comes next: its date list from the first
  // bookable day, and the vaccine when only one may be had.
  function prepareSearch(form, eligibility) {
    fillDates(form.elements.date, firstBookableDate(eligibility));
    form.elements.vaccine.value = eligibility.vaccines.length === 1 ? eligibility.vaccines[0] : "";
  }

  // The booked later doses that cancelling `reservation` takes with it
  // (API.md: cancelling dose N cancels N+1 and on), to say so beforehand.
  function cascadeOf(reservations, reservation) {
    return reservations.filter((r) => r.status === "booked" && r.dose > reservation.dose);
  }

  // What a cancel's answer says was cancelled: the reservation, then the
  // later doses that went with it.
  function cancelledBy(answer) {
    return [answer.body, ...(answer.body.also_cancelled || [])];
  }

  // Lists an availability answer's days (central venues only) with one
  // button per slot; `onChoose(day, time)` when one is picked. With
  // `showHeld`, the call centre's held seats are shown and bookable.
  function renderDays(results, date, days, venues, onChoose, showHeld) {
    clear(results);
    const central = days.filter((d) => !venues.has(d.venue_id) || venues.get(d.venue_id).booking === "central");
    if (central.length === 0) {
      results.append(el("p", { class: "notice", text: `${dateText(date)}に予約できる会場はありません。別の日付を選んでください。` }));
      return;
    }
    results.append(el("h3", { text: `${dateText(date, true)}の空き状況` }));
    const list = el("ul", { class: "plain" });
    for (const day of central) {
      const venue = venues.get(day.venue_id);
      const bookable = (slot) => slot.remaining + (showHeld ? slot.held_remaining || 0 : 0);
      const free = day.slots.reduce((sum, s) => sum + bookable(s), 0);
      const item = el("li", { "data-venue-id": day.venue_id }, [
        el("strong", { text: day.venue_name }),
        el("div", { text: `${vaccineText(day.vaccine)} / 残り ${free} 席` }),
        venue ? el("div", { class: "hint", text: `${venue.address} 電話 ${venue.phone}` }) : null,
      ]);
      if (day.opens_at && Date.parse(day.opens_at) > Date.now()) {
        item.append(el("div", { class: "hint", text: `予約受付開始: ${momentText(day.opens_at)}` }));
      }
      const slots = el("div", { class: "slots", role: "group", "aria-label": `${day.venue_name}の時間` });
      // A slot that has started today is not offered (it cannot be booked).
      for (const slot of day.slots.filter((s) => !s.started)) {
        const seats = bookable(slot);
        const held = showHeld && slot.held_remaining ? `(電話枠${slot.held_remaining})` : "";
        const button = el("button", {
          type: "button",
          class: seats === 0 ? "secondary" : "",
          disabled: seats === 0,
          "data-time": slot.time,
          text: seats === 0 ? `${slot.time} 満員` : `${slot.time} 残り${seats}席${held}`,
        });
        button.addEventListener("click", () => onChoose(day, slot.time));
        slots.append(button);
      }
      item.append(slots);
      list.append(item);
    }
    results.append(list);
  }

  // Runs a search form (`date`, `vaccine`, `access_code`) against
  // availability and lists what it finds in `results`; `onChoose(day, time,
  // accessCode)` when a slot is picked. With a `credential` the answer is
  // as of now (not the public, up to a second old one); with `showHeld`
  // (an operator) held seats are shown and bookable.
  async function findSlots(options) {
    const form = options.form;
    const query = new URLSearchParams({ date: form.elements.date.value });
    if (form.elements.vaccine.value) query.set("vaccine", form.elements.vaccine.value);
    const code = form.elements.access_code.value.trim();
    if (code) query.set("access_code", code);
    options.button.disabled = true;
    const answer = await call({ path: `/v1/availability?${query}`, credential: options.credential, waitNotice: options.waitNotice });
    options.button.disabled = false;
    if (!answer.ok) {
      clear(options.results);
      return answer;
    }
    const showHeld = Boolean(options.showHeld);
    renderDays(options.results, form.elements.date.value, answer.body.days, options.venues, (day, time) => options.onChoose(day, time, code), showHeld);
    return answer;
  }

  // Fills a <dl> with [name, value] rows.
  function fillFacts(facts, rows) {
    clear(facts);
    for (const [name, value] of rows) facts.append(el("dt", { text: name }), el("dd", { text: value }));
  }

  window.Vaxslot = {
    findSlots,
    prepareSearch,
    cascadeOf,
    cancelledBy,
    firstBookableDate,
    renderDays,
    fillFacts,
    call,
    el,
    clear,
    show,
    showProblem,
    describeProblem,
    dateText,
    timeText,
    momentText,
    today,
    addDays,
    vaccineText,
    statusText,
    channelText,
    doseText,
    normaliseBirthDate,
    digitsOnly,
    newIdempotencyKey,
    keyStore,
    keyForm,
  };
})();
