import { Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Public } from '../../auth/principal.js';
import { AdminLoginService } from '../services/admin-login.service.js';
import { AdminAssets, PAGE_HEADERS } from '../services/admin-assets.js';
import { AdminSessions } from '../auth/admin-session.js';

/** The dashboard's pages: login (form taking ADMIN_API_KEY), logout, the app and its assets. */
@Controller('admin')
@Public()
export class AdminPageController {
  constructor(
    private readonly sessions: AdminSessions,
    private readonly login: AdminLoginService,
    private readonly assets: AdminAssets,
  ) {}

  @Get()
  index(@Req() req: Request, @Res() res: Response): void {
    if (!this.sessions.proof(req)) return res.redirect(303, '/admin/login');
    res.set(PAGE_HEADERS).type('html').send(this.assets.page('index.html').body);
  }

  @Get('login')
  loginPage(@Query('next') next: string | undefined, @Res() res: Response): void {
    const page = this.login.page({ next });
    res.status(page.status).set(PAGE_HEADERS).type('html').send(page.html);
  }

  /** 303 to the dashboard with the session cookie; a wrong key answers 401 with the form again. */
  @Post('login')
  async submit(@Req() req: Request, @Res() res: Response): Promise<void> {
    const result = await this.login.submit(req);
    if (result.ok) {
      this.sessions.setCookie(req, res);
      res.redirect(303, result.next);
      return;
    }
    if (result.retryAfter) res.setHeader('Retry-After', String(result.retryAfter));
    res.status(result.status).set(PAGE_HEADERS).type('html').send(result.html);
  }

  @Post('logout')
  logout(@Req() req: Request, @Res() res: Response): void {
    this.sessions.clearCookie(req, res);
    res.redirect(303, '/admin/login');
  }

  @Get('assets/:file')
  asset(@Param('file') file: string, @Res() res: Response): void {
    const asset = this.assets.asset(file);
    if (!asset) {
      res.status(404).json({ error: { status: 404, code: 'not_found', message: `no asset ${file}` } });
      return;
    }
    res.set({ 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' }).type(asset.type).send(asset.body);
  }
}
