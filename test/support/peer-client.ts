import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import {
  create,
  ExchangeRequestSchema,
  GetModelMetadataRequestSchema,
  grpcServiceDefinition,
  JointAttentionService,
  ModelService,
  type ExchangeRequest,
  type ExchangeResponse,
  type GetModelMetadataResponse,
} from '@lavida/proto';
import type { AppProcess } from './processes.js';

const ExchangeClient = makeGenericClientConstructor(grpcServiceDefinition(JointAttentionService), 'JointAttentionService');
const ModelClient = makeGenericClientConstructor(grpcServiceDefinition(ModelService), 'ModelService');
const HealthClient = makeGenericClientConstructor(healthService, 'Health');

/** The gRPC address a started und-worker logged in its 'serving' line. */
export async function servingAddress(app: AppProcess): Promise<string> {
  const serving = await app.waitForLog('serving');
  const port = Number(serving.grpcPort);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`serving line without a grpcPort: ${JSON.stringify(serving)}`);
  return `127.0.0.1:${port}`;
}

export function exchangeClient(address: string): Client {
  return new ExchangeClient(address, credentials.createInsecure());
}

/** How a raw exchange call ended: the frames the peer sent, then its gRPC status. */
export interface ExchangeOutcome {
  responses: ExchangeResponse[];
  code: number;
  details: string;
}

/**
 * Sends hand-built frames on one Exchange call without ending the write side, and waits for the
 * peer to end the call. Rejects (and cancels) if the peer has not ended it within `timeoutMs`.
 */
export function rawExchange(client: Client, frames: readonly ExchangeRequest[], timeoutMs = 5000): Promise<ExchangeOutcome> {
  const call = (client as unknown as { exchange: () => ClientDuplexStream<ExchangeRequest, ExchangeResponse> }).exchange();
  const responses: ExchangeResponse[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`the peer did not end the call within ${timeoutMs} ms; it sent [${responses.map((r) => r.frame.case).join(', ')}]`));
    }, timeoutMs);
    call.on('data', (response: ExchangeResponse) => responses.push(response));
    call.on('error', () => undefined); // the status event carries it
    call.on('status', (status) => {
      clearTimeout(timer);
      resolve({ responses, code: status.code, details: status.details });
    });
    for (const frame of frames) call.write(frame);
  });
}

export function request(frame: ExchangeRequest['frame']): ExchangeRequest {
  return create(ExchangeRequestSchema, { frame });
}

/** ModelService.GetModelMetadata of a worker. */
export function modelMetadata(address: string): Promise<GetModelMetadataResponse> {
  const client = new ModelClient(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (
      client as unknown as { getModelMetadata: (req: unknown, cb: (error: Error | null, res: GetModelMetadataResponse) => void) => void }
    ).getModelMetadata(create(GetModelMetadataRequestSchema), (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    });
  });
}

/** grpc.health.v1.Health/Check of one service name; resolves the status string or rejects with the gRPC error. */
export function healthCheck(address: string, serviceName: string): Promise<string> {
  const client = new HealthClient(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as { check: (req: unknown, cb: (error: Error | null, res: { status: string }) => void) => void }).check(
      { service: serviceName },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(response.status);
      },
    );
  });
}
