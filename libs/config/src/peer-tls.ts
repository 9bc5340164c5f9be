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

type TlsConfig = Pick<Config, 'GRPC_TLS_CA' | 'GRPC_TLS_CERT' | 'GRPC_TLS_KEY' | 'GRPC_TLS_SERVER_NAME'>;

/**
 * The peer links' TLS files, or undefined for plaintext when none of GRPC_TLS_CA, GRPC_TLS_CERT and
 * GRPC_TLS_KEY is set. Some but not all of them set, or a file that cannot be read, throws a
 * ConfigError naming it: a worker never falls back to plaintext when TLS was asked for.
 */
export function peerTlsFiles(config: TlsConfig): PeerTlsFiles | undefined {
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
  return {
    ca: read('GRPC_TLS_CA'),
    cert: read('GRPC_TLS_CERT'),
    key: read('GRPC_TLS_KEY'),
    ...(config.GRPC_TLS_SERVER_NAME ? { serverName: config.GRPC_TLS_SERVER_NAME } : {}),
  };
}
