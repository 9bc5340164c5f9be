import { readFileSync } from 'node:fs';
import type { Config } from './index.js';
import { ConfigError } from './index.js';

/** PEM material of the gRPC peer links' mutual TLS, read from the files the configuration names. */
export interface PeerTlsFiles {
  /** The CA every peer's certificate must chain to. */
  ca: Buffer;
  /** This worker's certificate chain, presented as server and as client. */
  cert: Buffer;
  key: Buffer;
  /** Name the servers' certificates are checked against, instead of the dialled host. */
  serverName?: string;
}

type TlsConfig = Pick<Config, 'GRPC_TLS_CA' | 'GRPC_TLS_CERT' | 'GRPC_TLS_KEY' | 'GRPC_TLS_SERVER_NAME' | 'GRPC_TLS_GEN_SERVER_NAME'>;

/**
 * What the TLS material is for: a peer server (no name to check), or a client dialling the
 * understanding peers (UND_PEERS: the gen-worker) or the generation peers (GEN_PEERS: the und-worker).
 */
export type PeerTlsRole = 'server' | 'und-peers' | 'gen-peers';

/**
 * The name a client checks its peers' certificates against, per direction: GRPC_TLS_SERVER_NAME for
 * the understanding peers, GRPC_TLS_GEN_SERVER_NAME for the generation peers; unset (or a server),
 * undefined: the host each address dials.
 */
export function peerTlsServerName(config: TlsConfig, role: PeerTlsRole): string | undefined {
  if (role === 'und-peers') return config.GRPC_TLS_SERVER_NAME;
  if (role === 'gen-peers') return config.GRPC_TLS_GEN_SERVER_NAME;
  return undefined;
}

/**
 * The peer links' TLS files, or undefined for plaintext when none of GRPC_TLS_CA, GRPC_TLS_CERT and
 * GRPC_TLS_KEY is set. Some but not all of them set, or a file that cannot be read, throws a
 * ConfigError naming it: a worker never falls back to plaintext when TLS was asked for. `role` picks
 * the name a client checks the servers' certificates against (peerTlsServerName).
 */
export function peerTlsFiles(config: TlsConfig, role: PeerTlsRole): PeerTlsFiles | undefined {
  const paths = { GRPC_TLS_CA: config.GRPC_TLS_CA, GRPC_TLS_CERT: config.GRPC_TLS_CERT, GRPC_TLS_KEY: config.GRPC_TLS_KEY };
  const set = Object.entries(paths).filter(([, path]) => path);
  if (set.length === 0) return undefined;
  if (set.length < 3) {
    const missing = Object.keys(paths).filter((key) => !paths[key as keyof typeof paths]);
    throw new ConfigError(`mutual TLS needs GRPC_TLS_CA, GRPC_TLS_CERT and GRPC_TLS_KEY: ${missing.join(', ')} not set`);
  }
  const read = (key: keyof typeof paths): Buffer => {
    try {
      const pem = readFileSync(paths[key]!);
      if (!pem.includes('-----BEGIN ')) throw new Error('not a PEM file');
      return pem;
    } catch (error) {
      throw new ConfigError(`${key}=${paths[key]} cannot be read: ${(error as Error).message}`);
    }
  };
  const serverName = peerTlsServerName(config, role);
  return {
    ca: read('GRPC_TLS_CA'),
    cert: read('GRPC_TLS_CERT'),
    key: read('GRPC_TLS_KEY'),
    ...(serverName ? { serverName } : {}),
  };
}
