// Hive Gateway configuration of the KlikkFlow router.
// Subgraph URLs come from KLIKKFLOW_SUBGRAPH_<NAME>_URL (default: the committed supergraph's).
// Subscriptions reach subgraphs over graphql-transport-ws: Strawberry's SSE frames end in
// CRLF, which the gateway's SSE parser drops.
import { defineConfig } from '@graphql-hive/gateway';

const subgraphs = ['identity', 'workflows', 'executions', 'ai'];

function transportEntry(name: string) {
  const url = process.env[`KLIKKFLOW_SUBGRAPH_${name.toUpperCase()}_URL`];
  return {
    ...(url ? { location: url } : {}),
    options: {
      subscriptions: {
        kind: 'ws',
        ...(url ? { location: url.replace(/^http/, 'ws') } : {}),
        // Over WebSocket the token travels in connection_init: one upstream connection per
        // distinct token, so tenants never share a socket. WebSocket clients of the gateway
        // put `authorization` in their own connection_init payload; it arrives as a header.
        options: {
          connectionParams: { authorization: '{context.headers.authorization}' },
        },
      },
    },
  };
}

export const gatewayConfig = defineConfig({
  supergraph: process.env.KLIKKFLOW_SUPERGRAPH ?? '../schemas/supergraph.graphql',
  transportEntries: Object.fromEntries(subgraphs.map((name) => [name, transportEntry(name)])),
  // The Authorization header (and, for WebSocket clients, the connection_init payload's
  // `authorization`) goes to every subgraph, over HTTP and over WebSocket.
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const authorization = request.headers.get('authorization');
      return authorization ? { authorization } : {};
    },
  },
  graphiql: process.env.KLIKKFLOW_GRAPHIQL === '1',
  landingPage: false,
});
