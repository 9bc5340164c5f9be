import { Body, Controller, Delete, Get, Header, HttpCode, Param, Post } from '@nestjs/common';
import { RequireScope, type ApiKeyRecord } from '../auth/principal.js';
import { CreateApiKeySchema, type ApiKeyDto, type CreateApiKey, type CreatedApiKeyDto } from '../dtos/api-key.dto.js';
import { ApiKeyService } from '../services/api-key.service.js';
import { ZodValidationPipe } from './validation.pipe.js';

const dto = (record: ApiKeyRecord): ApiKeyDto => ({
  id: record.id,
  name: record.name,
  scopes: record.scopes,
  created_at: record.createdAt,
  rate_limit_per_minute: record.rateLimitPerMinute ?? null,
});

/** API key management: admin keys only. */
@Controller('v1/keys')
@RequireScope('admin')
export class KeyController {
  constructor(private readonly keys: ApiKeyService) {}

  /** 201 with the key: the only time it is shown (only its SHA-256 is kept). */
  @Post()
  @HttpCode(201)
  @Header('Cache-Control', 'no-store')
  async create(@Body(new ZodValidationPipe(CreateApiKeySchema)) body: CreateApiKey): Promise<CreatedApiKeyDto> {
    const { record, key } = await this.keys.create({
      name: body.name,
      scopes: body.scopes,
      ...(body.rate_limit_per_minute === undefined ? {} : { rateLimitPerMinute: body.rate_limit_per_minute }),
    });
    return { ...dto(record), key };
  }

  @Get()
  async list(): Promise<{ results: ApiKeyDto[] }> {
    return { results: (await this.keys.list()).map(dto) };
  }

  @Delete(':id')
  @HttpCode(204)
  async revoke(@Param('id') id: string): Promise<void> {
    await this.keys.revoke(id);
  }
}
