import { z } from 'zod';
import { SCOPES } from '../auth/principal.js';

/** Body of `POST /v1/keys`. */
export const CreateApiKeySchema = z
  .object({
    name: z.string().trim().min(1).max(200),
    scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length).default(['jobs']),
    rate_limit_per_minute: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();
export type CreateApiKey = z.infer<typeof CreateApiKeySchema>;

/** An API key as listed: never the key, never its hash. */
export interface ApiKeyDto {
  id: string;
  name: string;
  scopes: string[];
  created_at: string;
  /** Its own requests per minute; null: RATE_LIMIT_PER_MINUTE. */
  rate_limit_per_minute: number | null;
}

/** `POST /v1/keys`: the key itself, shown this once. */
export interface CreatedApiKeyDto extends ApiKeyDto {
  key: string;
}
