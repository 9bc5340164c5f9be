import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CATEGORIES, checkPrompt, samplePrompt, sceneForPrompt, type PromptSpec } from './prompts.js';
import { readImage } from './read.js';
import { addBlob, parseVerdict, perturbForPrompt, reasonAgreement, reflect, reflectionAgreement, verdictText } from './reflection.js';
import { render } from './render.js';
import { Rng } from './rng.js';
import type { Scene, SceneObject } from './scene.js';

const o = (shape: SceneObject['shape'], colour: SceneObject['colour'], x: number, y: number): SceneObject => ({
  shape,
  colour,
  size: 'small',
  x,
  y,
});
const scene = (...objects: SceneObject[]): Scene => ({ background: 30, objects });
const s = scene(o('circle', 'red', 40, 20), o('square', 'blue', 5, 24));

describe('reflection', () => {
  it('gives verdicts and reasons from the fixed grammar', () => {
    const cases: [PromptSpec, string][] = [
      [{ category: 'single_object', shape: 'circle' }, 'correct'],
      [{ category: 'single_object', shape: 'triangle' }, 'incorrect because missing a triangle'],
      [{ category: 'two_object', shapes: ['circle', 'triangle'] }, 'incorrect because missing a triangle'],
      [{ category: 'counting', shape: 'circle', count: 2 }, 'incorrect because wrong count of circles'],
      [{ category: 'colors', colour: 'orange', shape: 'circle' }, 'incorrect because missing an orange circle'],
      [{ category: 'position', shapes: ['circle', 'square'], relation: 'left of' }, 'incorrect because no circle is left of a square'],
      [{ category: 'position', shapes: ['circle', 'square'], relation: 'right of' }, 'correct'],
      [{ category: 'position', shapes: ['triangle', 'square'], relation: 'left of' }, 'incorrect because missing a triangle'],
      [
        {
          category: 'color_attr',
          objects: [
            { colour: 'red', shape: 'circle' },
            { colour: 'red', shape: 'square' },
          ],
        },
        'incorrect because missing a red square',
      ],
    ];
    for (const [spec, text] of cases) {
      const verdict = reflect(spec, readImage(render(s)));
      assert.equal(verdictText(verdict), text);
      assert.deepEqual(parseVerdict(text), verdict);
    }
    const unclean = addBlob(new Rng(1), render(s));
    assert.equal(
      verdictText(reflect({ category: 'single_object', shape: 'circle' }, readImage(unclean))),
      'incorrect because wrong objects in the image',
    );
  });

  it('agreement compares verdicts (reasons optionally)', () => {
    const yes = { matches: true, reason: '' };
    const no = { matches: false, reason: 'missing a circle' };
    assert.ok(reflectionAgreement(yes, yes));
    assert.ok(reflectionAgreement(no, { matches: false, reason: 'wrong count of circles' }));
    assert.equal(reflectionAgreement(yes, no), false);
    assert.equal(reasonAgreement(no, { matches: false, reason: 'wrong count of circles' }), false);
    assert.ok(reasonAgreement({ matches: false, reason: 'Missing a circle' }, no));
    assert.equal(parseVerdict('maybe'), undefined);
  });

  it('perturbed scenes fail the prompt and blobs read as unclean', () => {
    const rng = new Rng(5);
    for (const category of CATEGORIES) {
      for (let i = 0; i < 50; i++) {
        const { spec } = samplePrompt(rng, category);
        const good = sceneForPrompt(rng, spec);
        assert.equal(reflect(spec, readImage(render(good))).matches, true);
        const bad = perturbForPrompt(rng, spec, good);
        assert.equal(checkPrompt(spec, bad.scene), false);
        assert.equal(reflect(spec, readImage(render(bad.scene))).matches, false);
        assert.equal(readImage(addBlob(rng, render(good))).clean, false);
      }
    }
  });
});
