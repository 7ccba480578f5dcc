// A node:test reporter for `npm test`: a dot per test, each failure in full, then one summary line in pytest's
// words ("8 passed, 0 failed in 0.05s"). With TEST_REPORT=<file> it also writes the counts as JSON, which
// `make test` adds to its summary of every tier.
import { writeFileSync } from "node:fs";

export default async function* summaryReporter(source) {
  const started = process.hrtime.bigint();
  const counts = { passed: 0, failed: 0, skipped: [] };
  const failures = [];
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { name, skip, todo, details } = event.data;
    const file = event.data.file?.replace(`${process.cwd()}/`, "");
    if (details?.type === "suite") continue; // its tests are counted one by one
    if (skip !== undefined || todo !== undefined) {
      counts.skipped.push({ test: `${file ?? ""}::${name}`, reason: String(skip ?? todo ?? "") });
      yield "s";
    } else if (event.type === "test:pass") {
      counts.passed += 1;
      yield ".";
    } else {
      counts.failed += 1;
      failures.push(`FAILED ${file ?? ""}::${name}\n${details?.error?.stack ?? details?.error ?? ""}\n`);
      yield "F";
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const parts = [`${counts.passed} passed`, `${counts.failed} failed`];
  if (counts.skipped.length) parts.push(`${counts.skipped.length} skipped`);
  yield `\n${failures.join("\n")}${parts.join(", ")} in ${seconds.toFixed(2)}s\n`;
  if (process.env.TEST_REPORT) {
    writeFileSync(process.env.TEST_REPORT, JSON.stringify({ ...counts, seconds }));
  }
}
