// Meeting room page /c/{clinic}/rooms/{room}: the token comes in the URL fragment (#token=...).

import { SfuCall } from "./call.js";
import {
  $, attachSelfView, bindMediaToggles, decodeClaims, explain, explainMediaError, getLocalMedia,
  pathParts, setBanner, showScreen, stopStream, storage, takeFragmentToken, tokenExpired,
} from "./common.js";

const { clinic, room } = pathParts();
const TOKEN_KEY = `sfu.room.${clinic}.${room}.token`;
const PLACE = "this meeting room";

let token = null;
let localStream = null;
let call = null;

function refuse(text) {
  stopStream(localStream);
  localStream = null;
  $("#refused-text").textContent = text;
  showScreen("refused");
}

function showPeople(others) {
  $("#call").classList.toggle("in-consultation", others.length > 0);
  const names = others.map((p) => p.name || (p.role === "guest" ? "Guest" : "Colleague"));
  $("#people").textContent = names.length ? `In this room with you: ${names.join(", ")}` : "";
}

async function start() {
  showScreen("call");
  setBanner($("#media-error"), "");
  const { stream, error } = await getLocalMedia();
  localStream = stream;
  if (error) setBanner($("#media-error"), explainMediaError(error), "error");
  if (stream) attachSelfView($("#self-video"), stream);
  $("#call").classList.toggle("no-camera", !(stream && stream.getVideoTracks().length));
  bindMediaToggles(stream, fresh("#toggle-mic"), fresh("#toggle-cam"));
  call = new SfuCall({
    token, target: { room }, localStream: stream, grid: $("#grid"), banner: $("#banner"),
    place: PLACE, exposeAs: "sfuCall", onParticipants: showPeople,
    onEnded: (reason) => finished(reason),
    onError: (code, text) => refuse(text),
  });
  window.sfuCall = call;
  call.start();
}

function fresh(selector) {
  const old = $(selector);
  const copy = old.cloneNode(true);
  old.replaceWith(copy);
  return copy;
}

function finished(reason) {
  stopStream(localStream);
  localStream = null;
  const texts = {
    room_deleted: ["The meeting room was closed", "An administrator removed this room."],
    server_shutdown: ["The call was interrupted", "The video service is restarting. Join again in a minute."],
    replaced: ["You joined from somewhere else", "This call continues in your other window or tab."],
    left: ["You have left the meeting", "You can close this page now."],
  };
  const [title, text] = texts[reason] || ["The meeting has ended", "You can close this page now."];
  $("#ended-title").textContent = title;
  $("#ended-text").textContent = text;
  $("#rejoin").hidden = reason === "room_deleted";
  showScreen("ended");
}

function init() {
  $("#room-name").textContent = room;
  $("#leave").addEventListener("click", () => {
    if (call) call.leave();
    call = null;
    finished("left");
  });
  $("#rejoin").addEventListener("click", start);
  token = takeFragmentToken(TOKEN_KEY);
  const claims = token ? decodeClaims(token) : null;
  if (!token) {
    refuse("This page needs an invitation link. Please open the link you were sent "
      + "(or the room's link on the clinic dashboard).");
  } else if (!claims || tokenExpired(claims)) {
    storage.removeItem(TOKEN_KEY);
    refuse(explain("unauthorized"));
  } else {
    start();
  }
}

init();
