// Parse Mermaid diagrams with Mermaid's own parser and print, as JSON, what it understood.
//
//   node check.mjs FILE...      a .md file: every ```mermaid block in it; any other file: one diagram
//
// Prints [{file, block, ok, error, type, entities, relationships}] and exits 0 when every
// diagram parsed, 1 when one did not, 2 on bad usage. Mermaid wants a DOM even to parse
// (DOMPurify), so jsdom provides one; nothing is rendered.
import fs from "node:fs";
import { JSDOM } from "jsdom";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node check.mjs FILE...");
  process.exit(2);
}

const { window } = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

function diagramsOf(file) {
  const text = fs.readFileSync(file, "utf8");
  if (!file.endsWith(".md")) return [text];
  const blocks = [];
  const fence = /^```mermaid[ \t]*\n([\s\S]*?)^```[ \t]*$/gm;
  for (const match of text.matchAll(fence)) blocks.push(match[1]);
  return blocks;
}

function describe(diagram) {
  const out = { type: diagram.type };
  if (diagram.type !== "er") return out;
  const labels = new Map();
  out.entities = {};
  for (const [name, entity] of diagram.db.getEntities()) {
    labels.set(entity.id, name);
    out.entities[name] = entity.attributes.map((attr) => ({
      type: attr.type,
      name: attr.name,
      keys: attr.keys ?? [],
      comment: attr.comment ?? "",
    }));
  }
  out.relationships = diagram.db.getRelationships().map((rel) => ({
    // Mermaid stores "A ||--o{ B" with cardA describing B's end, cardB describing A's end
    from: labels.get(rel.entityA) ?? rel.entityA,
    to: labels.get(rel.entityB) ?? rel.entityB,
    label: rel.roleA,
    fromCard: rel.relSpec.cardB,
    toCard: rel.relSpec.cardA,
    identifying: rel.relSpec.relType === "IDENTIFYING",
  }));
  return out;
}

const results = [];
for (const file of files) {
  const diagrams = diagramsOf(file);
  if (diagrams.length === 0) {
    results.push({ file, block: 0, ok: false, error: "no ```mermaid block found" });
  }
  for (const [block, text] of diagrams.entries()) {
    try {
      const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
      results.push({ file, block, ok: true, error: null, ...describe(diagram) });
    } catch (err) {
      results.push({ file, block, ok: false, error: String(err?.message ?? err) });
    }
  }
}
console.log(JSON.stringify(results, null, 1));
process.exit(results.every((r) => r.ok) ? 0 : 1);
