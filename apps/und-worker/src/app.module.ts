import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit, type Config } from '@lavida/config';
import { loadModelFromConfig, ModelPackage } from '@lavida/model';
import { PeerServerService } from './services/peer-server.service.js';

@Module({
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    { provide: ModelPackage, useFactory: (config: Config) => loadModelFromConfig(config, 'und'), inject: [CONFIG] },
    PeerServerService,
  ],
})
export class AppModule {}
