// Hive Gateway configuration of the KlikkFlow router.
// Subgraph URLs come from KLIKKFLOW_SUBGRAPH_<NAME>_URL (default: the committed supergraph's).
// Subscriptions reach subgraphs over graphql-transport-ws: Strawberry's SSE frames end in
// CRLF, which the gateway's SSE parser drops.
import { defineConfig } from '@graphql-hive/gateway';

const subgraphs = ['identity', 'workflows', 'executions', 'ai'];
// The organization a client means to act in; subgraphs refuse a token for another one.
const ORGANIZATION = 'x-klikkflow-organization';

// The address of the client socket (Node's http server puts its request in the context).
function peerAddress(context: unknown): string | undefined {
  const req = (context as { req?: { socket?: { remoteAddress?: string } } } | undefined)?.req;
  return req?.socket?.remoteAddress;
}

function forwardFor(received: string | null, peer: string | undefined): string | undefined {
  const hops = (received ?? '').split(',').map((hop) => hop.trim()).filter(Boolean);
  if (peer) hops.push(peer);
  return hops.length ? hops.join(', ') : undefined;
}

function transportEntry(name: string) {
  const url = process.env[`KLIKKFLOW_SUBGRAPH_${name.toUpperCase()}_URL`];
  return {
    ...(url ? { location: url } : {}),
    options: {
      subscriptions: {
        kind: 'ws',
        ...(url ? { location: url.replace(/^http/, 'ws') } : {}),
        // Over WebSocket the token travels in connection_init: one upstream connection per
        // distinct token (and organization), so tenants never share a socket. WebSocket
        // clients of the gateway put `authorization` (and `x-klikkflow-organization`) in
        // their own connection_init payload; each arrives as a header. Empty ones are dropped.
        options: {
          connectionParams: {
            authorization: '{context.headers.authorization}',
            [ORGANIZATION]: `{context.headers.${ORGANIZATION}}`,
          },
        },
      },
    },
  };
}

export const gatewayConfig = defineConfig({
  supergraph: process.env.KLIKKFLOW_SUPERGRAPH ?? '../schemas/supergraph.graphql',
  transportEntries: Object.fromEntries(subgraphs.map((name) => [name, transportEntry(name)])),
  // Authorization and X-KlikkFlow-Organization (and, for WebSocket clients, the same keys
  // of the connection_init payload) go to every subgraph, over HTTP and over WebSocket.
  // X-Forwarded-For goes on with the address of whoever connected to us appended, so a
  // subgraph that trusts us (KLIKKFLOW_TRUSTED_PROXIES) limits the real client, not us.
  propagateHeaders: {
    fromClientToSubgraphs({ request, context }) {
      const headers: Record<string, string> = {};
      for (const name of ['authorization', ORGANIZATION]) {
        const value = request.headers.get(name);
        if (value) headers[name] = value;
      }
      const forwardedFor = forwardFor(request.headers.get('x-forwarded-for'), peerAddress(context));
      if (forwardedFor) headers['x-forwarded-for'] = forwardedFor;
      return headers;
    },
  },
  graphiql: process.env.KLIKKFLOW_GRAPHIQL === '1',
  landingPage: false,
});
