// The pre-call test (docs/API.md "Pre-call test"): a few seconds of the local camera and
// microphone sent to the server and echoed back, over a SECOND WebSocket and its own
// RTCPeerConnection, so that a call on the page's other socket is left as it is.
//
// The server sends `tracks` + `offer` (answered like a call's first offer: the local tracks go on
// the first audio and video m-lines, sendonly), echoes the media back with padding on top (it
// probes the downlink), and after `seconds` sends `precall_result`. Meanwhile the page reports
// its own uplink estimate twice a second (`precall_stats`: the selected candidate pair's
// `availableOutgoingBitrate`), and when asked (`precall_upload`) sends filler over this socket
// for the server to time: the uplink probe. Then this socket and peer connection are closed.

import { explain, parseMessage, publishLocalTracks } from "./common.js";

const EXTRA_WAIT_MS = 15000; // beyond `seconds`: connecting, and the server's last measurement
const STATS_INTERVAL_MS = 500; // how often the page tells the server its uplink estimate
const UPLOAD_CHUNK_BYTES = 6000; // random bytes per `precall_upload` message (8000 in base64)
const UPLOAD_IN_FLIGHT = 32000; // filler bytes sent but not yet acknowledged (`precall_uploaded`)

export class PrecallTest {
  // options: token, localStream (or null), seconds (2..15, default 5)
  constructor(options) {
    this.token = options.token;
    this.localStream = options.localStream || null;
    this.seconds = options.seconds || 5;
    this.ws = null;
    this.pc = null;
    this.iceServers = []; // from precall_started
    this.done = false;
    this.queue = Promise.resolve();
  }

  // Resolves to the server's precall_result; rejects with an Error whose `code` is the server's
  // error code ("network" when the socket dropped or the test timed out, "cancelled").
  run() {
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`);
      this.ws = ws;
      this.timer = setTimeout(() => this.fail("network", "the test did not finish in time"),
                              this.seconds * 1000 + EXTRA_WAIT_MS);
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: "auth", token: this.token })); // not in the URL
        ws.send(JSON.stringify({ type: "precall", seconds: this.seconds }));
      };
      ws.onmessage = (event) => {
        const message = parseMessage(event);
        if (!message) return;
        this.queue = this.queue.then(() => this.handle(message)).catch((error) => {
          this.fail("media_failed", (error && error.message) || "the test connection failed");
        });
      };
      ws.onclose = () => this.fail("network", "the connection to the server closed during the test");
    });
  }

  async handle(message) {
    if (this.done) return;
    switch (message.type) {
      case "precall_started": // the TURN servers for this test's connection, before its offer
        this.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
        break;
      case "offer":
        await this.answer(message.sdp);
        break;
      case "precall_upload": // the uplink probe: filler over this socket, not awaited here
        this.upload(message.kbps, message.seconds);
        break;
      case "precall_uploaded":
        this.uploadAcked = message.bytes;
        break;
      case "precall_result":
        this.finish();
        this.resolve(message);
        break;
      case "error":
        this.fail(message.code || "error", message.message || "");
        break;
      default: // "tracks" names our own echoed media: nothing to place
        break;
    }
  }

  async answer(sdp) {
    let pc = this.pc;
    const first = !pc;
    if (first) {
      pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: this.iceServers || [] });
      this.pc = pc;
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed") this.fail("media_failed", "the test connection failed");
      };
    }
    await pc.setRemoteDescription({ type: "offer", sdp });
    if (first) await publishLocalTracks(pc, this.localStream);
    if (this.done) return;
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "answer", sdp: pc.localDescription.sdp }));
    }
    if (first) this.statsTimer = setInterval(() => this.reportStats(), STATS_INTERVAL_MS);
  }

  // Send `kbps` x `seconds` of filler as fast as the link takes it (within `seconds`): the
  // server times what arrives and acknowledges it; no more than UPLOAD_IN_FLIGHT is ever
  // unacknowledged (the socket's own buffers would hold seconds of it on a slow uplink).
  async upload(kbps, seconds) {
    if (!(kbps > 0 && kbps <= 100000 && seconds > 0 && seconds <= 5)) return;
    let left = (kbps * 1000 / 8) * seconds;
    let sent = 0;
    this.uploadAcked = 0;
    const end = performance.now() + seconds * 1000;
    while (left > 0 && !this.done && performance.now() < end) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (sent - this.uploadAcked < UPLOAD_IN_FLIGHT) {
        // random bytes: the socket's compression (permessage-deflate) cannot shrink them
        const bytes = crypto.getRandomValues(new Uint8Array(Math.min(UPLOAD_CHUNK_BYTES, Math.ceil(left))));
        const data = btoa(String.fromCharCode(...bytes));
        ws.send(JSON.stringify({ type: "precall_upload", data }));
        left -= bytes.length;
        sent += bytes.length;
      } else {
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
  }

  // The browser's own estimate of what it can send (its congestion controller's), in kbit/s.
  async reportStats() {
    const pc = this.pc;
    if (!pc || this.done) return;
    let kbps = null;
    try {
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === "transport" && r.selectedCandidatePairId) {
          const pair = stats.get(r.selectedCandidatePairId);
          if (pair && typeof pair.availableOutgoingBitrate === "number") {
            kbps = pair.availableOutgoingBitrate / 1000;
          }
        }
      });
      if (kbps === null) {
        stats.forEach((r) => {
          if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded"
              && typeof r.availableOutgoingBitrate === "number") {
            kbps = r.availableOutgoingBitrate / 1000;
          }
        });
      }
    } catch (error) {
      return; // closed meanwhile
    }
    if (kbps === null || this.done || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "precall_stats", outgoing_kbps: Math.round(kbps) }));
  }

  fail(code, text) {
    if (this.done) return;
    this.finish();
    const error = new Error(text);
    error.code = code;
    this.reject(error);
  }

  cancel() {
    this.fail("cancelled", "the test was stopped");
  }

  // Close this test's peer connection and socket (the local tracks belong to the page).
  finish() {
    this.done = true;
    clearTimeout(this.timer);
    clearInterval(this.statsTimer);
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
    }
  }
}

// "upload 480 kbit/s, download 650 kbit/s, round trip 12 ms" (what was measured).
export function precallFigures(result) {
  const parts = [];
  const number = (value) => typeof value === "number" && Number.isFinite(value);
  const atLeast = (flag) => (flag ? "at least " : "");
  if (number(result.up_kbps)) {
    parts.push(`upload ${atLeast(result.up_at_least)}${Math.round(result.up_kbps)} kbit/s`);
  }
  if (number(result.down_kbps)) {
    parts.push(`download ${atLeast(result.down_at_least)}${Math.round(result.down_kbps)} kbit/s`);
  }
  if (number(result.rtt_ms)) parts.push(`round trip ${Math.round(result.rtt_ms)} ms`);
  return parts.join(", ");
}

// The verdict in plain words, with the figures: { kind: "info"|"warn"|"error", text }.
export function describePrecall(result) {
  const figures = precallFigures(result);
  const measured = figures ? ` (${figures})` : "";
  const advice = "Try moving closer to your Wi-Fi router, closing other apps or videos, "
    + "or using another network, then test again.";
  switch (result.verdict) {
    case "ok":
      return { kind: "info", text: `Your connection is good for a video consultation${measured}.` };
    case "warn":
      if (result.video === "full") { // a long round trip
        return { kind: "warn", text: `Your connection is slow to respond: expect short delays in the conversation${measured}.` };
      }
      if (result.video === "reduced") {
        return { kind: "warn", text: `Your connection is fair: video may be less sharp at times${measured}.` };
      }
      return {
        kind: "warn",
        text: `Your connection is weak: video may be paused or delayed, and the consultation may `
          + `continue with sound only${measured}. ${advice}`,
      };
    default:
      if (!result.up_kbps) {
        return {
          kind: "error",
          text: "No sound or video from you reached the clinic's server. Check that your camera and "
            + "microphone are allowed and on, and that your network or firewall allows video calls, "
            + "then test again.",
        };
      }
      return { kind: "error", text: `Your connection is too weak for a video consultation${measured}. ${advice}` };
  }
}

// A test that could not be run, in plain words.
export function describePrecallError(error) {
  const code = error && error.code;
  if (code === "network" || code === "media_failed") {
    return "The connection test could not be completed: the connection to the clinic's server "
      + "was lost. Check your internet connection and test again.";
  }
  return "The connection test could not be run: " + explain(code, error && error.message);
}
