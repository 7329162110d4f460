"use strict";
// The SRE console: `/v1/admin/status` every second, booking and refusal
// rates as small charts, and the kill switch. The switch's state shown is
// always what the server last said, never a guess: while a change is on its
// way the box says so, and it shows the PUT's answer when it comes.

(function () {
  const V = window.Vaxslot;
  const $ = (id) => document.getElementById(id);
  const message = $("message");
  const POLL_INTERVAL_MS = 1000;
  // Points each chart keeps (one per poll: two minutes).
  const CHART_POINTS_MAX = 120;
  let keyForm = null;
  let engaged = null; // as the server last said
  let changing = false;
  let polling = false;
  const committed = [];
  const refused = [];

  function showSwitch(state) {
    engaged = state.engaged;
    const box = $("switch-state");
    box.dataset.engaged = String(state.engaged);
    box.className = `switch-state ${state.engaged ? "engaged" : "released"}`;
    const since = state.changed_at ? `(${V.momentText(state.changed_at)} ${state.changed_by || ""})` : "";
    box.textContent = state.engaged
      ? `停止中: すべての予約・取り消しをお断りしています。理由: ${state.reason || "—"} ${since}`
      : `受付中: 予約を受け付けています。 ${since}`;
    if (!changing) {
      $("switch-ask").textContent = state.engaged ? "予約の受付を再開する…" : "予約を停止する…";
      $("switch-ask").className = state.engaged ? "" : "danger";
      $("reason-hint").textContent = state.engaged ? "再開する理由(任意)。記録に残ります。" : "停止する理由(必須)。記録に残ります。";
    }
  }

  function showUnknown(answer) {
    const box = $("switch-state");
    box.dataset.engaged = "unknown";
    box.className = "switch-state unknown";
    box.textContent = "状態を取得できません。接続を確かめています…";
    if (answer) V.showProblem(message, answer);
  }

  function figure(label, value) {
    return V.el("div", {}, [V.el("span", { class: "value", text: value }), document.createTextNode(label)]);
  }

  function rate(x) {
    return x === null || x === undefined ? "—" : x.toFixed(1);
  }

  function showStatus(status) {
    const figures = $("figures");
    V.clear(figures);
    const refusedTotal = Object.values(status.bookings.refused_per_s).reduce((a, b) => a + b, 0);
    figures.append(
      figure("予約成立/秒", rate(status.bookings.committed_per_s)),
      figure("お断り/秒", rate(refusedTotal)),
      figure("予約 p99 (ms)", status.bookings.p99_ms === null ? "—" : status.bookings.p99_ms.toFixed(0)),
      figure("ログイン成功/秒", rate(status.logins.ok_per_s)),
      figure("ログイン失敗/秒", rate(status.logins.failed_per_s)),
      figure("ロック/秒", rate(status.logins.locked_per_s)),
      figure("処理中の要求", String(status.in_flight)),
      figure("会場日アクター", String(status.venue_day_actors)),
      figure("残り席 / 定員", `${status.slots.remaining} / ${status.slots.capacity}`),
      figure(`ストア (${status.store.kind})`, status.store.up ? "正常" : "停止"),
    );
    const mail = status.mail_outbox;
    figures.append(
      figure(
        "未送信メール",
        mail.enabled ? `${mail.pending} 通（最古 ${mail.oldest_s} 秒）` : "メール送信なし",
      ),
    );
    $("updated").textContent = `更新 ${new Date().toLocaleTimeString("ja-JP", { timeZone: "Asia/Tokyo" })} / 版 ${status.version}`;
    const refusals = $("refusals");
    V.clear(refusals);
    const codes = Object.entries(status.bookings.refused_per_s).filter(([, n]) => n > 0);
    if (codes.length === 0) refusals.append(V.el("li", { text: "なし" }));
    for (const [code, n] of codes) refusals.append(V.el("li", { "data-code": code, text: `${code} ${rate(n)}` }));
    push(committed, status.bookings.committed_per_s);
    push(refused, refusedTotal);
    draw($("chart-committed"), committed, "#0a6b2f", "予約成立");
    draw($("chart-refused"), refused, "#a4161a", "お断り");
  }

  function push(series, value) {
    series.push(value);
    if (series.length > CHART_POINTS_MAX) series.shift();
  }

  function draw(canvas, series, colour, label) {
    const context = canvas.getContext("2d");
    const { width, height } = canvas;
    context.clearRect(0, 0, width, height);
    const top = Math.max(1, ...series);
    context.strokeStyle = "#8a8a8a";
    context.lineWidth = 1;
    context.beginPath();
    context.moveTo(0, height - 0.5);
    context.lineTo(width, height - 0.5);
    context.stroke();
    context.strokeStyle = colour;
    context.lineWidth = 3;
    context.beginPath();
    series.forEach((value, i) => {
      const x = (i / (CHART_POINTS_MAX - 1)) * width;
      const y = height - 4 - (value / top) * (height - 24);
      if (i === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
    context.fillStyle = "#1a1a1a";
    context.font = "16px sans-serif";
    context.fillText(`最大 ${top.toFixed(1)}/秒`, 8, 18);
    const last = series.length ? series[series.length - 1] : 0;
    canvas.setAttribute("aria-label", `${label}の推移。いま ${last.toFixed(1)} 件/秒、直近の最大 ${top.toFixed(1)} 件/秒`);
  }

  async function poll() {
    if (polling) return;
    polling = true;
    const answer = await V.call({ path: "/v1/admin/status", credential: keyForm.key(), retry: false });
    polling = false;
    if (answer.ok) {
      if (!changing) showSwitch(answer.body.kill_switch);
      showStatus(answer.body);
      return;
    }
    if (answer.status === 401 || answer.status === 403) {
      stop();
      keyForm.refused(answer);
      return;
    }
    if (!changing) showUnknown(null);
  }

  let timer = null;
  function start() {
    $("console").hidden = false;
    if (!timer) timer = setInterval(poll, POLL_INTERVAL_MS);
    poll();
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    $("console").hidden = true;
  }

  function ask(event) {
    event.preventDefault();
    if (engaged === null) return;
    const reason = $("reason").value.trim();
    if (!engaged && !reason) {
      V.show(message, "bad", "停止する理由を入力してください。", ["理由は記録に残り、あとで振り返るときに使います。"]);
      $("reason").focus();
      return;
    }
    V.show(message, "", null);
    const confirm = $("switch-confirm");
    if (engaged) {
      $("switch-confirm-title").textContent = "予約の受付を再開しますか？";
      $("switch-confirm-text").textContent = "すべての窓口(インターネット・電話)で予約と取り消しを再開します。";
      $("switch-yes").textContent = "再開を確定する";
      $("switch-yes").className = "";
    } else {
      $("switch-confirm-title").textContent = "すべての予約を停止しますか？";
      $("switch-confirm-text").textContent = `すべての窓口(インターネット・電話)で、予約と取り消しを直ちにお断りします。受付(チェックイン)と閲覧は続きます。理由: ${reason}`;
      $("switch-yes").textContent = "停止を確定する";
      $("switch-yes").className = "danger";
    }
    confirm.dataset.engage = String(!engaged);
    confirm.hidden = false;
    $("switch-confirm-title").focus();
  }

  async function change() {
    const confirm = $("switch-confirm");
    const engage = confirm.dataset.engage === "true";
    const reason = $("reason").value.trim() || null;
    changing = true;
    confirm.hidden = true;
    $("switch-ask").disabled = true;
    const box = $("switch-state");
    box.textContent = `${engage ? "停止" : "再開"}を送信中… (サーバーの返事を待っています)`;
    box.className = "switch-state unknown";
    box.dataset.engaged = "unknown";
    const answer = await V.call({ method: "PUT", path: "/v1/admin/kill-switch", credential: keyForm.key(), body: { engaged: engage, reason } });
    changing = false;
    $("switch-ask").disabled = false;
    if (answer.ok) {
      showSwitch(answer.body);
      $("reason").value = "";
      V.show(message, "ok", engage ? "予約を停止しました。" : "予約の受付を再開しました。", ["表示はサーバーが返した状態です。"]);
    } else {
      V.showProblem(message, answer);
      poll();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    keyForm = V.keyForm({
      form: $("key-form"),
      notice: message,
      storageName: "vaxslot.sre.key",
      probe: (key) => V.call({ path: "/v1/admin/status", credential: key, retry: false }),
      onReady: start,
    });
    $("switch-form").addEventListener("submit", ask);
    $("switch-yes").addEventListener("click", change);
    $("switch-no").addEventListener("click", () => {
      $("switch-confirm").hidden = true;
    });
  });
})();
