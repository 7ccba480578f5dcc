import assert from "node:assert/strict";
import { test } from "node:test";

import { latencyLine } from "../src/messages.js";

test("latency line from the local engine's metrics event", () => {
  const line = latencyLine({
    type: "local_engine_metrics",
    local_engine_metrics_event: { event_id: 3, transcript_s: 0.384, first_text_s: 0.3851, first_audio_s: 0.462 },
  });
  assert.equal(line, "Turn 3: end of speech → transcript 0.38 s → first reply text 0.39 s → first audio 0.46 s");
});

test("no latency line for other debug events or missing figures", () => {
  assert.equal(latencyLine({ type: "tentative_agent_response", response: "x" }), null);
  assert.equal(latencyLine({ local_engine_metrics_event: { event_id: 1 } }), null);
  assert.equal(latencyLine(null), null);
});

test("figures not measured yet show as a dash", () => {
  const line = latencyLine({ local_engine_metrics_event: { event_id: 1, first_audio_s: 0.5 } });
  assert.equal(line, "Turn 1: end of speech → transcript – → first reply text – → first audio 0.50 s");
});
