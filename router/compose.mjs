// Compose schemas/supergraph.graphql from the committed subgraph SDL files.
// Usage: node compose.mjs <schemas dir> [--check]
// Exit 1 with the composition errors on failure; with --check, exit 2 when the
// committed supergraph differs from the composed one.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'graphql';
import { composeServices } from '@theguild/federation-composition';

const SUBGRAPHS = [
  ['identity', 4001],
  ['workflows', 4002],
  ['executions', 4003],
  ['ai', 4004],
];

const dir = process.argv[2] ?? '../schemas';
const check = process.argv.includes('--check');

const services = SUBGRAPHS.map(([name, port]) => ({
  name,
  url: `http://127.0.0.1:${port}/graphql`,
  typeDefs: parse(readFileSync(join(dir, `${name}.graphql`), 'utf8')),
}));

const result = composeServices(services);
if (result.errors && result.errors.length) {
  for (const error of result.errors) console.error(`composition error: ${error.message}`);
  process.exit(1);
}
const supergraph = result.supergraphSdl.trimEnd() + '\n';
const target = join(dir, 'supergraph.graphql');
if (check) {
  const committed = existsSync(target) ? readFileSync(target, 'utf8') : '';
  if (committed !== supergraph) {
    console.error(`${target} differs from the composition of the subgraph schemas`);
    process.exit(2);
  }
  console.log('supergraph up to date');
} else {
  writeFileSync(target, supergraph);
  console.log(`wrote ${target}`);
}
