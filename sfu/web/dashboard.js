// Staff dashboard /c/{clinic}/dashboard#token=...: the waiting list (live over the WebSocket
// `watch`), with join, end for everyone, and invite a guest. Joining opens the call in this page
// over a second WebSocket with the same token.

import { SfuCall } from "./call.js";
import {
  $, api, attachSelfView, bindMediaToggles, decodeClaims, el, explain, explainMediaError,
  formatDuration, getLocalMedia, parseMessage, pathParts, setBanner, showScreen, stopStream,
  storage, takeFragmentToken,
  tokenExpired,
} from "./common.js";

const { clinic } = pathParts();
const TOKEN_KEY = `sfu.staff.${clinic}.token`;
const STATUS = { waiting: "Waiting", in_consultation: "In consultation", on_hold: "On hold" };
const CONFIRM_MS = 5000;

let token = null;
let spaces = [];
let watcher = null;
let watchDelay = 1000;
const confirming = new Map(); // space id -> time until which "End" asks for confirmation
let current = null; // { space, call, stream } while in a call
const base = `/v1/clinics/${encodeURIComponent(clinic)}`;

function notice(text, kind = "info") {
  setBanner($("#notice"), text, kind);
}

function refuse(text) {
  if (watcher) {
    watcher.onclose = null;
    watcher.close();
  }
  $("#refused-text").textContent = text;
  $("#live").hidden = true;
  showScreen("refused");
}

// -- the waiting list ---------------------------------------------------------------------------

function update(data) {
  spaces = Array.isArray(data.spaces) ? data.spaces : [];
  const closed = $("#closed-notice");
  setBanner(closed, data.closed ? `The waiting area is closed to new patients. ${data.message || ""}` : "", "warn");
  render();
}

function render() {
  const body = $("#spaces");
  body.replaceChildren(...spaces.map(row));
  $("#empty").hidden = spaces.length > 0;
  $("table.spaces").hidden = spaces.length === 0;
  if (current) {
    const confirm = (confirming.get(current.space) || 0) > Date.now();
    $("#call-end").textContent = confirm ? "Confirm: end for everyone" : "End for everyone";
    $("#call-end").classList.toggle("confirm", confirm);
  }
  tick();
}

function row(space) {
  const id = space.space;
  const name = (space.patient && space.patient.name) || "Patient";
  const participants = space.participants || [];
  const present = participants.some((p) => p.role === "patient");
  const others = participants.filter((p) => p.role !== "patient").map((p) => p.name || p.role);
  const inThisCall = current && current.space === id;
  const confirm = (confirming.get(id) || 0) > Date.now();
  return el("tr", { "data-space": id, class: inThisCall ? "current" : "" },
    el("td", {},
      el("span", { class: "patient-name", text: name }),
      el("span", { class: `presence ${present ? "online" : "offline"}`,
                   text: present ? "connected" : "not connected" })),
    el("td", {}, el("span", { class: `status status-${space.status}`, text: STATUS[space.status] || space.status })),
    el("td", { class: "wait", "data-since": String(Date.parse(space.waiting_since) || Date.now()) }),
    el("td", { class: "small", text: others.length ? others.join(", ") : "—" }),
    el("td", { class: "actions" }, el("div", { class: "action-buttons" },
      el("button", { type: "button", class: "primary", "data-action": "join", disabled: inThisCall,
                     text: inThisCall ? "Joined" : "Join", onclick: () => join(space) }),
      el("button", { type: "button", "data-action": "invite", text: "Invite guest",
                     onclick: () => invite(space) }),
      el("button", { type: "button", class: confirm ? "danger confirm" : "danger", "data-action": "end",
                     text: confirm ? "Confirm end" : "End", onclick: () => end(id) }))));
}

function tick() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("td.wait")) {
    cell.textContent = formatDuration((now - Number(cell.dataset.since)) / 1000);
  }
  for (const [id, until] of confirming) {
    if (until <= now) {
      confirming.delete(id);
      render();
      return;
    }
  }
}

// -- live updates -----------------------------------------------------------------------------------

function watch() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`);
  watcher = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "auth", token })); // the token in a message, not in the URL
    ws.send(JSON.stringify({ type: "watch", waiting_area: true }));
  };
  ws.onmessage = (event) => {
    const message = parseMessage(event);
    if (!message) return;
    if (message.type === "waiting_area") {
      watchDelay = 1000;
      live(true);
      update(message);
    } else if (message.type === "error") {
      if (["unauthorized", "forbidden", "not_found"].includes(message.code)) {
        refuse(explain(message.code, message.message, "this clinic's dashboard"));
      } else {
        notice(explain(message.code, message.message), "warn");
      }
    }
  };
  ws.onclose = () => {
    if (watcher !== ws) return;
    live(false);
    setTimeout(watch, watchDelay);
    watchDelay = Math.min(watchDelay * 2, 15000);
  };
}

function live(on) {
  const badge = $("#live");
  badge.hidden = false;
  badge.textContent = on ? "Live" : "Reconnecting…";
  badge.classList.toggle("offline", !on);
}

// -- actions --------------------------------------------------------------------------------------

async function end(id) {
  if ((confirming.get(id) || 0) <= Date.now()) {
    confirming.set(id, Date.now() + CONFIRM_MS);
    render();
    return;
  }
  confirming.delete(id);
  try {
    await api("POST", `${base}/waiting-area/${encodeURIComponent(id)}/end`, { token });
    notice("The consultation was ended for everyone.");
  } catch (error) {
    notice(explain(error.code, error.message, "this consultation"), "error");
  }
  render();
}

async function invite(space) {
  try {
    const result = await api("POST", `${base}/waiting-area/${encodeURIComponent(space.space)}/invites`,
                             { token, body: {} });
    const name = (space.patient && space.patient.name) || "the patient";
    $("#invite-title").textContent = `Invite a guest to the consultation with ${name}`;
    $("#invite-url").value = result.url;
    const expires = Date.parse(result.expires_at);
    $("#invite-expiry").textContent = expires ? `, until ${new Date(expires).toLocaleString()}` : "";
    $("#invite-copy").textContent = "Copy link";
    $("#invite").hidden = false;
    $("#invite-url").select();
  } catch (error) {
    notice(explain(error.code, error.message, "this consultation"), "error");
  }
}

async function copyInvite() {
  const input = $("#invite-url");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand("copy");
  }
  $("#invite-copy").textContent = "Copied";
}

// -- the call ---------------------------------------------------------------------------------

async function join(space) {
  if (current) leaveCall();
  const panel = $("#call-panel");
  const name = (space.patient && space.patient.name) || "the patient";
  $("#call-title").textContent = `Consultation with ${name}`;
  panel.hidden = false;
  setBanner($("#media-error"), "");
  setBanner($("#banner"), "");
  const entry = { space: space.space, call: null, stream: null };
  current = entry;
  render();
  const { stream, error } = await getLocalMedia();
  if (current !== entry) {
    stopStream(stream);
    return;
  }
  entry.stream = stream;
  if (error) setBanner($("#media-error"), explainMediaError(error), "error");
  if (stream) attachSelfView($("#self-video"), stream);
  bindMediaToggles(stream, fresh("#toggle-mic"), fresh("#toggle-cam"));
  entry.call = new SfuCall({
    token, target: { space: space.space }, localStream: stream, grid: $("#grid"), banner: $("#banner"),
    place: "this consultation", exposeAs: "sfuCall",
    onEnded: (reason) => callOver(entry, reason === "ended_by_staff"
      ? "The consultation has ended." : "The call has ended."),
    onError: (code, text) => callOver(entry, text, "error"),
  });
  window.sfuCall = entry.call;
  entry.call.start();
}

function fresh(selector) {
  const old = $(selector);
  const copy = old.cloneNode(true);
  old.replaceWith(copy);
  return copy;
}

function callOver(entry, text, kind = "info") {
  if (current !== entry) return;
  closeCall();
  notice(text, kind);
}

function closeCall() {
  if (!current) return;
  if (current.call) current.call.finish();
  stopStream(current.stream);
  $("#self-video").srcObject = null;
  $("#call-panel").hidden = true;
  current = null;
  render();
}

function leaveCall() {
  if (current && current.call) current.call.leave();
  closeCall();
}

// -- start ------------------------------------------------------------------------------------

async function loadRooms() {
  try {
    const info = await api("GET", base, { token });
    const rooms = Array.isArray(info.rooms) ? info.rooms : [];
    $("#rooms").replaceChildren(...rooms.map((r) => el("li", {},
      el("a", { href: `/c/${encodeURIComponent(clinic)}/rooms/${encodeURIComponent(r.id)}#token=${token}`,
                target: "_blank", rel: "noopener", text: r.name || r.id }),
      el("span", { class: "muted small", text: r.participants && r.participants.length
        ? ` ${r.participants.length} inside` : "" }))));
    $("#rooms-box").hidden = rooms.length === 0;
    if (info.name) $("#clinic-name").textContent = info.name;
  } catch {
    $("#rooms-box").hidden = true;
  }
}

async function init() {
  $("#clinic-name").textContent = clinic;
  token = takeFragmentToken(TOKEN_KEY);
  const claims = token ? decodeClaims(token) : null;
  if (!token) {
    refuse("This page needs a sign-in link. Please open the dashboard from the clinic portal.");
    return;
  }
  if (!claims || tokenExpired(claims)) {
    storage.removeItem(TOKEN_KEY);
    refuse(explain("unauthorized"));
    return;
  }
  $("#who").textContent = claims.name ? `Signed in as ${claims.name}` : "";
  try {
    update(await api("GET", `${base}/waiting-area`, { token }));
  } catch (error) {
    if (error.code === "unauthorized") storage.removeItem(TOKEN_KEY);
    refuse(error.code === "not_found"
      ? "There is no clinic at this address."
      : explain(error.code, error.message, "this clinic's dashboard"));
    return;
  }
  showScreen("board");
  $("#invite-copy").addEventListener("click", copyInvite);
  $("#invite-close").addEventListener("click", () => { $("#invite").hidden = true; });
  $("#call-leave").addEventListener("click", leaveCall);
  $("#call-end").addEventListener("click", () => { if (current) end(current.space); });
  setInterval(tick, 1000);
  watch();
  loadRooms();
}

init();
