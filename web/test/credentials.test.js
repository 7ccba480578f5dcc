// node --test: the page's credential handling and its plain-words messages, without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SERVER_CONFUSED, SERVER_UNREACHABLE, needsAccessCode, requestCredentials, sessionOptions } from "../src/credentials.js";
import { disconnectMessage, microphoneProblem } from "../src/messages.js";

const answer = (status, body) => async () => ({
  ok: status >= 200 && status < 300,
  status,
  json: async () => (typeof body === "string" ? JSON.parse(body) : body),
});

test("a token becomes a WebRTC session, with LiveKit URL and first message when given", async () => {
  const got = await requestCredentials(
    answer(200, { token: "t.o.k", conversation_id: "conv_1", livekit_url: "wss://lk", first_message: "Hi" }),
  );
  assert.equal(got.ok, true);
  assert.deepEqual(sessionOptions(got.credentials), {
    conversationToken: "t.o.k",
    connectionType: "webrtc",
    livekitUrl: "wss://lk",
    overrides: { agent: { firstMessage: "Hi" } },
  });
});

test("a signed URL becomes a WebSocket session", () => {
  assert.deepEqual(sessionOptions({ signed_url: "wss://x/v1/convai/conversation?s=1", livekit_url: "wss://lk" }), {
    signedUrl: "wss://x/v1/convai/conversation?s=1",
    connectionType: "websocket",
  });
});

test("the bearer secret is sent only when there is one", async () => {
  const seen = [];
  const fetchImpl = async (url, init) => {
    seen.push([url, init.headers]);
    return answer(200, { token: "t" })();
  };
  await requestCredentials(fetchImpl, "");
  await requestCredentials(fetchImpl, "code-1");
  assert.deepEqual(seen, [
    ["api/token", { Accept: "application/json" }],
    ["api/token", { Accept: "application/json", Authorization: "Bearer code-1" }],
  ]);
});

test("server refusals keep the server's words; anything else gets ours", async () => {
  assert.deepEqual(await requestCredentials(answer(401, { error: "Need a code.", code: "access_code_required" })), {
    ok: false,
    code: "access_code_required",
    message: "Need a code.",
  });
  const offline = async () => {
    throw new TypeError("Failed to fetch");
  };
  assert.equal((await requestCredentials(offline)).message, SERVER_UNREACHABLE);
  assert.equal((await requestCredentials(answer(502, "<html>proxy error"))).message, SERVER_UNREACHABLE);
  assert.equal((await requestCredentials(answer(200, { nothing: true }))).message, SERVER_CONFUSED);
  assert.equal(needsAccessCode("access_code_wrong"), true);
  assert.equal(needsAccessCode("origin_not_allowed"), false);
});

test("microphone and disconnect messages are plain words", () => {
  assert.match(microphoneProblem({ name: "NotAllowedError" }), /blocked/);
  assert.match(microphoneProblem({ name: "NotFoundError" }), /No microphone/);
  assert.match(microphoneProblem(null, { secure: false }), /https/);
  assert.deepEqual(disconnectMessage({ reason: "user" }), { status: "Conversation ended.", error: null });
  assert.equal(disconnectMessage({ reason: "agent" }).error, null);
  assert.match(disconnectMessage({ reason: "error", message: "x" }).error, /cut off/);
});
