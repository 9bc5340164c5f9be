import { credentials, ServerCredentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';

/** PEM material of mutual TLS on the peer links (the shape of @lavida/config's PeerTlsFiles). */
export interface PeerTls {
  /** CA that the other side's certificate must chain to. */
  ca: Buffer;
  /** This side's certificate chain and key: the server's, and the client's certificate. */
  cert: Buffer;
  key: Buffer;
  /** Name the server's certificate is checked against, instead of the dialled host. */
  serverName?: string;
}

/**
 * A peer server's credentials: with TLS, the server presents its certificate and requires a client
 * certificate that chains to the CA (a client without one fails the handshake); without, plaintext.
 */
export function peerServerCredentials(tls?: PeerTls): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** A peer client's credentials: with TLS, it verifies the server against the CA and presents its own certificate. */
export function peerChannelCredentials(tls?: PeerTls): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/** Channel options that check the server's certificate against `serverName` rather than the dialled host. */
export function peerTlsChannelOptions(tls?: PeerTls): ChannelOptions {
  if (!tls?.serverName) return {};
  return { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName };
}

/**
 * A driver's channel to its serving peers: mutual TLS when `tls` is given (the server's certificate
 * checked against `tls.serverName`, else the dialled host; ours presented), and the load-balancing
 * policy over every address a peer name resolves to (`round_robin`: each pod of a headless Service).
 */
export function peerDriverChannel(
  tls: PeerTls | undefined,
  lbPolicy: 'pick_first' | 'round_robin',
): { credentials: ChannelCredentials; channelOptions: ChannelOptions } {
  return {
    credentials: peerChannelCredentials(tls),
    channelOptions: { ...peerTlsChannelOptions(tls), 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ [lbPolicy]: {} }] }) },
  };
}
