import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit, TelemetryShutdown } from '@lavida/config';
import { StageQueueRepository } from './repositories/stage-queue.repository.js';
import { PipelineProcessor } from './services/pipeline.processor.js';
import { WebhookRepository } from './repositories/webhook.repository.js';
import { WebhookEmitter } from './services/webhook-emitter.js';
import { WebhookDeliveryWorker } from './services/webhook-delivery.worker.js';
import { QueueMetrics } from './services/queue-metrics.js';
import { workerRegistryProvider } from './services/worker-registry.provider.js';

@Module({
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    StageQueueRepository,
    PipelineProcessor,
    WebhookRepository,
    WebhookEmitter,
    WebhookDeliveryWorker,
    QueueMetrics,
    TelemetryShutdown,
    workerRegistryProvider,
  ],
})
export class AppModule {}
