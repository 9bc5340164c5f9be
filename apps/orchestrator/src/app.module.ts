import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit } from '@lavida/config';
import { StageQueueRepository } from './repositories/stage-queue.repository.js';
import { PipelineProcessor } from './services/pipeline.processor.js';

@Module({
  providers: [{ provide: CONFIG, useFactory: () => loadConfigOrExit() }, StageQueueRepository, PipelineProcessor],
})
export class AppModule {}
