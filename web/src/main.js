// The voice page: Start asks for the microphone, then our server for credentials, then starts an ElevenLabs
// conversation with the official client; Stop ends it. Everything that goes wrong is said in plain words.
import { Conversation } from "@elevenlabs/client";

import { needsAccessCode, requestCredentials, sessionOptions } from "./credentials.js";
import { CONNECT_FAILED, disconnectMessage, microphoneProblem, modeStatus } from "./messages.js";

const $ = (id) => document.getElementById(id);

const ui = {
  start: $("start"),
  stop: $("stop"),
  status: $("status"),
  error: $("error"),
  access: $("access"),
  accessCode: $("access-code"),
  transcript: $("transcript"),
  transcriptEmpty: $("transcript-empty"),
};

let conversation = null;
// Each Start gets a new session number; callbacks of an older session (ended, or abandoned by Stop while it
// was still connecting) must not touch the page any more.
let session = 0;

/** idle | starting | connected | ending; mirrored on <body data-state> for styling and tests. */
function setState(state) {
  document.body.dataset.state = state;
  ui.start.disabled = state !== "idle";
  ui.stop.disabled = state === "idle" || state === "ending";
}

function setStatus(text) {
  ui.status.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

function addLine(who, text) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  item.append(label, document.createTextNode(text));
  ui.transcript.append(item);
  ui.transcriptEmpty.hidden = true;
  item.scrollIntoView({ block: "nearest" });
}

function finish(status, error = null) {
  conversation = null;
  setState("idle");
  setStatus(status);
  if (error) showError(error);
  ui.start.focus();
}

async function openMicrophone() {
  // Asked for before any credentials are spent; the stream is released at once (the client opens its own).
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    return microphoneProblem(null, { secure: false });
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    stream.getTracks().forEach((track) => track.stop());
    return null;
  } catch (error) {
    return microphoneProblem(error);
  }
}

async function start() {
  if (conversation || document.body.dataset.state !== "idle") return;
  const mine = ++session;
  clearError();
  setState("starting");
  setStatus("Asking for the microphone…");

  const micProblem = await openMicrophone();
  if (mine !== session) return;
  if (micProblem) return finish("Not connected.", micProblem);

  setStatus("Asking the voice server for a conversation…");
  const answer = await requestCredentials(window.fetch.bind(window), ui.accessCode.value.trim());
  if (mine !== session) return;
  if (!answer.ok) {
    finish("Not connected.", answer.message);
    if (needsAccessCode(answer.code)) {
      ui.access.hidden = false;
      ui.accessCode.focus();
    }
    return;
  }

  setStatus("Connecting…");
  let endedEarly = null; // a disconnect reported while startSession was still running
  const callbacks = {
    onConnect: () => {
      if (mine !== session || endedEarly) return;
      setState("connected");
      setStatus(modeStatus("listening"));
      ui.stop.focus();
    },
    onModeChange: ({ mode }) => {
      if (mine === session && document.body.dataset.state === "connected") setStatus(modeStatus(mode));
    },
    onMessage: ({ message, role, source }) => {
      if (mine !== session || !message) return;
      addLine(role === "user" || source === "user" ? "You" : "Assistant", message);
    },
    onError: (message) => {
      if (mine === session) showError(`The voice service reported a problem: ${message}`);
    },
    onDisconnect: (details) => {
      if (mine !== session) return;
      if (document.body.dataset.state === "starting") {
        endedEarly = details; // startSession is still running: its outcome decides what the page says
        return;
      }
      const { status, error } = disconnectMessage(details);
      finish(status, error);
    },
  };
  try {
    const started = await Conversation.startSession({ ...sessionOptions(answer.credentials), ...callbacks });
    if (mine !== session) {
      await started.endSession();
      return;
    }
    if (endedEarly) {
      const { status, error } = disconnectMessage(endedEarly);
      return finish(status, error);
    }
    conversation = started;
    if (document.body.dataset.state === "starting") callbacks.onConnect();
  } catch {
    if (mine === session) finish("Not connected.", CONNECT_FAILED);
  }
}

async function stop() {
  const ending = conversation;
  session += 1; // from now on, callbacks of this session leave the page alone
  if (!ending) {
    // Still connecting: startSession cannot be cancelled; its conversation is ended as soon as it resolves.
    return finish("Not connected.");
  }
  setState("ending");
  setStatus("Hanging up…");
  try {
    await ending.endSession();
  } finally {
    finish("Conversation ended.");
  }
}

function readAccessCodeFromFragment() {
  // An operator can share https://host/#access_code=... ; the fragment never reaches a server or a log.
  const params = new URLSearchParams(window.location.hash.slice(1));
  const code = params.get("access_code");
  if (code) {
    ui.accessCode.value = code;
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.access.addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
readAccessCodeFromFragment();
setState("idle");
