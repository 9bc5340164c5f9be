import type { ChannelOptions } from '@grpc/grpc-js';

/** Transport settings shared by the peer client and server. */
export interface TransportOptions {
  /** Tensors above this size travel in chunks. */
  chunkBytes: number;
  /** Largest message accepted; raised deliberately above grpc-js's 4 MiB default. */
  maxMessageBytes: number;
}

/** Channel options for both ends: message limits, keepalive so dead peers are noticed. */
export function channelOptions(transport: TransportOptions): ChannelOptions {
  return {
    'grpc.max_receive_message_length': transport.maxMessageBytes,
    'grpc.max_send_message_length': transport.maxMessageBytes,
    // A client's HTTP/2 receive window as large as the largest message: projections of a long text
    // side (e.g. a feedback image's 64 tokens on it) arrive without waiting for WINDOW_UPDATEs
    // after the default 64 KiB. (grpc-js has no such option for servers.)
    'grpc-node.flow_control_window': transport.maxMessageBytes,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // A restarted peer is found again within about a second, not after minutes of backoff.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2_000,
  };
}
