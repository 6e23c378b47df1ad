// Patient entry page /c/{clinic}: name -> waiting area (self-view, wait time) -> consultation -> ended.
// A token in the URL fragment (a guest's invite link) skips the name step.

import { SfuCall } from "./call.js";
import {
  $, api, attachSelfView, bindMediaToggles, decodeClaims, explain, explainMediaError,
  formatDuration, getLocalMedia, pathParts, setBanner, showScreen, stopStream, storage,
  takeFragmentToken, tokenExpired,
} from "./common.js";
import { PrecallTest, describePrecall, describePrecallError } from "./precall.js";

const { clinic } = pathParts();
const TOKEN_KEY = `sfu.patient.${clinic}.token`;
const SINCE_KEY = `sfu.patient.${clinic}.since`;

let token = null;
let target = null;
let localStream = null;
let call = null;
let ticker = null;
let consulted = false;
let precall = null; // the running pre-call test, if any

function forget() {
  storage.removeItem(TOKEN_KEY);
  storage.removeItem(SINCE_KEY);
}

function refuse(text) {
  stopLocal();
  $("#refused-text").textContent = text;
  showScreen("refused");
}

function stopLocal() {
  resetPrecall(true);
  clearInterval(ticker);
  ticker = null;
  stopStream(localStream);
  localStream = null;
  $("#self-video").srcObject = null;
}

// Use a token (fresh from entry, from an invite link, or kept from before a reload).
function useToken(value) {
  const claims = decodeClaims(value);
  if (!claims || tokenExpired(claims)) {
    forget();
    refuse(explain("unauthorized"));
    return;
  }
  token = value;
  if (typeof claims.space === "string") target = { space: claims.space };
  else if (typeof claims.room === "string") target = { room: claims.room };
  else {
    refuse(explain("forbidden", "", "this clinic's waiting area"));
    return;
  }
  if (claims.role === "guest") {
    $("#waiting-title").textContent = "Waiting to join the consultation";
    $("#waiting-text").textContent = "Please keep this page open: you will see the others as soon as they are here.";
  }
  if (!storage.getItem(SINCE_KEY)) storage.setItem(SINCE_KEY, String(Date.now()));
  startCall();
}

async function startCall() {
  showScreen("call");
  const stage = $("#call");
  stage.classList.remove("in-consultation");
  setBanner($("#media-error"), "");
  const since = Number(storage.getItem(SINCE_KEY)) || Date.now();
  const tick = () => { $("#wait-time").textContent = formatDuration((Date.now() - since) / 1000); };
  tick();
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
  resetPrecall(true);

  const { stream, error } = await getLocalMedia();
  localStream = stream;
  if (error) setBanner($("#media-error"), explainMediaError(error), "error");
  if (stream) attachSelfView($("#self-video"), stream);
  $("#call").classList.toggle("no-camera", !(stream && stream.getVideoTracks().length));
  bindMediaToggles(stream, replaceButton("#toggle-mic"), replaceButton("#toggle-cam"));
  resetPrecall(false);

  call = new SfuCall({
    token, target, localStream: stream, grid: $("#grid"), banner: $("#banner"),
    place: target.space ? "this consultation" : "this meeting room", exposeAs: "sfuCall",
    onParticipants: showParticipants, onEnded: ended, onError: refused,
  });
  window.sfuCall = call;
  call.start();
}

// A fresh copy of a button, so that a second call does not stack click handlers.
function replaceButton(selector) {
  const old = $(selector);
  const fresh = old.cloneNode(true);
  old.replaceWith(fresh);
  return fresh;
}

function showParticipants(others) {
  const inConsultation = others.length > 0;
  $("#call").classList.toggle("in-consultation", inConsultation);
  if (inConsultation) {
    consulted = true;
    if (precall) resetPrecall(false); // the consultation needs the bandwidth: stop the test
    $("#precall-result").hidden = true;
  } else if (consulted) {
    $("#waiting-title").textContent = "The clinician has stepped away";
    $("#waiting-text").textContent = "Please stay on this page: they will be back with you shortly.";
  }
}

const ENDINGS = {
  ended_by_staff: ["The consultation has ended", "Thank you. You can close this page now."],
  room_deleted: ["The meeting has ended", "This meeting room was closed. You can close this page now."],
  server_shutdown: ["The call was interrupted",
    "The video service is restarting. Reload this page in a minute to go back in."],
  replaced: ["You joined from somewhere else", "This call continues in your other window or tab."],
  patient_left: ["Your place in the waiting area has expired",
    "Please contact the clinic if you still need your consultation."],
  expired: ["Your place in the waiting area has expired",
    "Please contact the clinic if you still need your consultation."],
};

function ended(reason) {
  stopLocal();
  if (reason !== "server_shutdown") forget();
  const [title, text] = ENDINGS[reason] || ["The consultation has ended", "Thank you. You can close this page now."];
  $("#ended-title").textContent = title;
  $("#ended-text").textContent = text;
  $("#rejoin").hidden = reason !== "server_shutdown";
  showScreen("ended");
}

function refused(code, text) {
  if (["unauthorized", "forbidden", "not_found"].includes(code)) forget();
  refuse(text);
}

function leave() {
  if (call) call.leave();
  call = null;
  stopLocal();
  $("#ended-title").textContent = target && target.space ? "You have left the waiting area" : "You have left";
  $("#ended-text").textContent = "If you left by mistake, you can go back in while the clinic keeps your place.";
  $("#rejoin").hidden = false;
  showScreen("ended");
}

// "Test my connection" on the waiting screen: a pre-call test on a second socket with the same
// token and the camera and microphone already in use; the consultation's socket is left alone.
async function testConnection() {
  if (precall || !token) return;
  const button = $("#precall-start");
  const result = $("#precall-result");
  if (!localStream || !localStream.getTracks().length) {
    setBanner(result, "The test needs your camera or microphone. Allow them for this site "
      + "(look for the camera icon in the address bar), reload the page, then test again.", "warn");
    return;
  }
  const test = new PrecallTest({ token, localStream, seconds: 5 });
  precall = test;
  button.disabled = true;
  button.textContent = "Testing…";
  setBanner(result, "Testing your connection: this takes about 5 seconds…");
  const held = call;
  try {
    await holdVideo(held, true);
    const outcome = await test.run();
    if (precall !== test) return;
    const { kind, text } = describePrecall(outcome);
    setBanner(result, text, kind);
    result.dataset.verdict = outcome.verdict;
  } catch (error) {
    if (precall !== test || (error && error.code === "cancelled")) return;
    setBanner(result, describePrecallError(error), "error");
    result.dataset.verdict = "failed";
  } finally {
    await holdVideo(held, false);
    if (precall === test) {
      precall = null;
      button.disabled = false;
      button.textContent = "Test again";
    }
  }
}

// While the test runs, the waiting-area connection sends no video (nobody receives it before the
// consultation, whose start cancels the test): the test measures the link as a consultation
// would use it, not what is left beside a second copy of the camera.
async function holdVideo(held, hold) {
  const pc = held && held.pc;
  if (!pc || pc.connectionState === "closed") return;
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== "video") continue;
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) continue;
    params.encodings.forEach((encoding) => { encoding.active = !hold; });
    try {
      await sender.setParameters(params);
    } catch (error) {
      // negotiating or closed meanwhile: it keeps sending as it was
    }
  }
}

// Stop a running test; `busy` keeps the button disabled (no camera yet, or the page is leaving).
function resetPrecall(busy) {
  const test = precall;
  precall = null;
  if (test) test.cancel();
  const button = $("#precall-start");
  button.disabled = busy;
  button.textContent = "Test my connection";
  if (busy) {
    setBanner($("#precall-result"), "");
    delete $("#precall-result").dataset.verdict;
  }
}

async function enter(event) {
  event.preventDefault();
  const errorBox = $("#entry-error");
  const name = $("#name").value.trim();
  if (!name) {
    setBanner(errorBox, "Please enter your name.", "error");
    $("#name").focus();
    return;
  }
  const button = $("#enter");
  button.disabled = true;
  button.textContent = "Entering…";
  setBanner(errorBox, "");
  try {
    const result = await api("POST", `/v1/clinics/${encodeURIComponent(clinic)}/waiting-area`, { body: { name } });
    storage.setItem(TOKEN_KEY, result.token);
    storage.setItem(SINCE_KEY, String(Date.now()));
    useToken(result.token);
  } catch (error) {
    const text = error.code === "not_found"
      ? "There is no clinic at this address. Please check the link you were given."
      : explain(error.code, error.message, "this clinic's waiting area");
    setBanner(errorBox, text, "error");
  } finally {
    button.disabled = false;
    button.textContent = "Enter the waiting area";
  }
}

function init() {
  $("#clinic-name").textContent = clinic;
  $("#entry-form").addEventListener("submit", enter);
  $("#leave").addEventListener("click", leave);
  $("#precall-start").addEventListener("click", testConnection);
  $("#rejoin").addEventListener("click", () => {
    const kept = storage.getItem(TOKEN_KEY) || token;
    if (kept) useToken(kept);
    else location.reload();
  });
  $("#start-over").addEventListener("click", () => {
    forget();
    location.replace(location.pathname);
  });
  const kept = takeFragmentToken(TOKEN_KEY);
  if (kept) {
    useToken(kept);
  } else {
    showScreen("entry");
    $("#name").focus();
  }
}

init();
