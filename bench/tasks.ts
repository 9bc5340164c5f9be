import {
  editImage,
  LocalJointPeer,
  taskTemplates,
  textToImage,
  UnderstandingEngine,
  type EditRequest,
  type ImageRequest,
  type JointPeer,
  type ModelPackage,
  type TextToImageResult,
} from '@lavida/model';
import { GrpcJointPeer, type TransportOptions } from '@lavida/wire';
import { generateScene, referableObjects, referringExpression, render, Rng, sampleQuestion, scoreAnswer } from '@lavida/world';
import { HOST, median, round } from './support.js';

export interface PairTiming {
  runs: number;
  medianMs: Record<string, number>;
  /** Median of the second mode over the first. */
  ratio: number;
}

export interface TaskBench {
  /** Editing (condition grid, 2 guidance rows): split over single-process. */
  edit: PairTiming & { bytesPerImage: number; tokensIdentical: true };
  /** Regeneration with feedback (the earlier image read on the text side): split over single-process. */
  feedback: PairTiming & { bytesPerImage: number; tokensIdentical: true };
  /** Answers, grounding: the und-worker's branch alone against a process holding both branches. */
  understand: PairTiming;
  ground: PairTiming;
  /** Grounding of one box: 4 coordinate tokens in 1 forward against one token a forward (image encoded every call). */
  groundOneStepSpeedup: PairTiming & { forwards: Record<string, number>; sameBoxShare: number };
  /** The same with the image's semantic tokens cached (a pipeline's later stages on one image): decoding only. */
  groundOneStepSpeedupCached: PairTiming;
  /** Two references: decoded in parallel as rows against one after the other. */
  groundTwoRefs: PairTiming;
  /** Text-to-image in one process: the model's correction sweeps against none (steps of each). */
  corrections: PairTiming & { sweeps: number; steps: Record<'none' | 'model', number> };
  /**
   * One-step grounding of every object of a world scene (k boxes, references as rows of one forward)
   * against an autoregressive-style decoder: one coordinate token per forward over the whole
   * output (the references one after the other, 4 forwards each: 4k). Image tokens cached in both.
   */
  groundByBoxes: Array<PairTiming & { boxes: number; forwards: { oneStep: number; oneTokenAStep: number } }>;
  /**
   * The package's box prior (`tasks.box_prior`) against none: one-step grounding decoded jointly against each
   * slot's argmax (image tokens cached: decoding only), and a plan with its boxes re-decoded against as decoded.
   */
  boxPrior: { ground: PairTiming; plan: PairTiming & { forwards: Record<'none' | 'prior', number>; boxes: number } } | null;
  /** Answers (24 slots, 12 forwards) with and without the prompt cache, over world scenes and questions. */
  promptCache: PairTiming & { questions: number; sameAnswerShare: number; sameAnswerCorrect: Record<'cache' | 'noCache', number> };
}

/** Runs `a` and `b` alternately (which goes first alternates too) and returns the medians. */
export async function pairTiming(
  names: [string, string],
  a: () => Promise<unknown>,
  b: () => Promise<unknown>,
  warmup: number,
  runs: number,
): Promise<PairTiming> {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const ms: [number[], number[]] = [[], []];
  const time = async (fn: () => Promise<unknown>, into: number[]) => {
    const started = performance.now();
    await fn();
    into.push(performance.now() - started);
  };
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      await time(a, ms[0]);
      await time(b, ms[1]);
    } else {
      await time(b, ms[1]);
      await time(a, ms[0]);
    }
  }
  const [ma, mb] = [median(ms[0]), median(ms[1])];
  return { runs, medianMs: { [names[0]]: round(ma), [names[1]]: round(mb) }, ratio: round(mb / ma) };
}

/**
 * The trained model's other tasks: editing and feedback regeneration split across processes (the
 * text side in the `und` child at `port`) against one process, understanding and grounding on the
 * und branch alone, and one-step grounding against one coordinate a step.
 */
export async function measureTasks(
  port: number,
  und: ModelPackage,
  gen: ModelPackage,
  all: ModelPackage,
  transport: TransportOptions,
  runs: number,
): Promise<TaskBench> {
  let bytes = 0;
  const remote = new GrpcJointPeer({
    ...transport,
    addresses: [`${HOST}:${port}`],
    modelName: gen.manifest.name,
    modelVersion: gen.manifest.version,
    timeoutMs: 20_000,
    onExchange: (_kind, _ms, n) => (bytes += n),
  });
  const local = new LocalJointPeer(all);
  let session = 0;
  try {
    const source = await textToImage(all, local, { prompt: 'a red circle left of a blue square', seed: 7 }, { sessionId: 'bench-source' });
    const exactPair = async <R extends ImageRequest | EditRequest>(
      run: (pkg: ModelPackage, peer: JointPeer, request: R, options: { sessionId: string }) => Promise<TextToImageResult>,
      request: R,
    ) => {
      let reference: string | undefined;
      let perImage = 0;
      const once = async (pkg: ModelPackage, peer: JointPeer) => {
        bytes = 0;
        const result = await run(pkg, peer, request, { sessionId: `bench-task-${session++}` });
        reference ??= result.tokens.join();
        if (result.tokens.join() !== reference) throw new Error('split and single-process tokens differ');
        if (peer === remote) perImage = bytes;
      };
      const timing = await pairTiming(
        ['single', 'split'],
        () => once(all, local),
        () => once(gen, remote),
        2,
        runs,
      );
      return { ...timing, bytesPerImage: perImage, tokensIdentical: true as const };
    };
    const edit = await exactPair(editImage, { instruction: 'remove the red circle', pixels: source.pixels, seed: 3 });
    const correctionSteps = { none: 0, model: 0 };
    // The same image without corrections (0) and with the model's (unset).
    const drawWith = (which: 'none' | 'model', correctionSweeps?: number) => async () => {
      const request = { prompt: 'a red circle left of a blue square', seed: 9, correctionSweeps };
      correctionSteps[which] = (await textToImage(all, local, request, { sessionId: `bench-task-${session++}` })).steps;
    };
    const corrections = await pairTiming(['none', 'model'], drawWith('none', 0), drawWith('model'), 2, runs);
    const feedback = await exactPair(textToImage, {
      prompt: 'a red circle left of a blue square',
      seed: 8,
      feedback: { verdict: 'the blue square is missing', pixels: source.pixels },
    });

    // No image cache: every call encodes its image, as a first request does.
    const undEngine = new UnderstandingEngine(und, { imageCacheSize: 0 });
    const allEngine = new UnderstandingEngine(all, { imageCacheSize: 0 });
    const cachedEngine = new UnderstandingEngine(und);
    const understand = await pairTiming(
      ['single', 'split'],
      () => allEngine.understand(source.pixels, 'what colour is the circle?'),
      () => undEngine.understand(source.pixels, 'what colour is the circle?'),
      2,
      runs,
    );
    const ground = await pairTiming(
      ['single', 'split'],
      () => allEngine.ground(source.pixels, ['the red circle']),
      () => undEngine.ground(source.pixels, ['the red circle']),
      2,
      runs,
    );
    const forwards: Record<string, number> = {};
    const groundOneStepSpeedup = await pairTiming(
      ['oneTokenAStep', 'oneStep'],
      async () => (forwards.oneTokenAStep = (await undEngine.ground(source.pixels, ['the red circle'], { steps: 4 })).forwards),
      async () => (forwards.oneStep = (await undEngine.ground(source.pixels, ['the red circle'], { steps: 1 })).forwards),
      2,
      runs,
    );
    const groundOneStepSpeedupCached = await pairTiming(
      ['oneTokenAStep', 'oneStep'],
      () => cachedEngine.ground(source.pixels, ['the red circle'], { steps: 4 }),
      () => cachedEngine.ground(source.pixels, ['the red circle'], { steps: 1 }),
      2,
      runs,
    );
    // How often the two decodings agree, over a few references and images.
    const refs = ['the red circle', 'the blue square', 'the circle', 'the square'];
    let same = 0;
    for (const ref of refs) {
      const [a, b] = await Promise.all([
        undEngine.ground(source.pixels, [ref], { steps: 1 }),
        undEngine.ground(source.pixels, [ref], { steps: 4 }),
      ]);
      if (a.bins[0].join() === b.bins[0].join()) same += 1;
    }
    const groundTwoRefs = await pairTiming(
      ['sequential', 'parallel'],
      async () => {
        await undEngine.ground(source.pixels, ['the red circle']);
        await undEngine.ground(source.pixels, ['the blue square']);
      },
      () => undEngine.ground(source.pixels, ['the red circle', 'the blue square']),
      2,
      runs,
    );
    // k = 1..4 boxes: scenes with k objects, each with a referring expression.
    const boxRng = new Rng(20261128);
    const groundByBoxes: TaskBench['groundByBoxes'] = [];
    for (let k = 1; k <= 4; k++) {
      let scene = generateScene(boxRng, { count: k });
      while (referableObjects(scene).length !== k) scene = generateScene(boxRng, { count: k });
      const pixels = render(scene);
      const refsK = referableObjects(scene).map((i) => referringExpression(scene, i) as string);
      const counted = { oneStep: 0, oneTokenAStep: 0 };
      const timing = await pairTiming(
        ['oneTokenAStep', 'oneStep'],
        async () => {
          let n = 0;
          for (const ref of refsK) n += (await cachedEngine.ground(pixels, [ref], { steps: 4 })).forwards;
          counted.oneTokenAStep = n;
        },
        async () => (counted.oneStep = (await cachedEngine.ground(pixels, refsK, { steps: 1 })).forwards),
        2,
        runs,
      );
      groundByBoxes.push({ ...timing, ratio: round(1 / timing.ratio), boxes: k, forwards: counted });
    }
    // The box prior: its cost where the package has one (decoding under it, and the plan boxes' extra forwards).
    let boxPrior: TaskBench['boxPrior'] = null;
    if (taskTemplates(und.manifest).box_prior) {
      const groundTiming = await pairTiming(
        ['none', 'prior'],
        () => cachedEngine.ground(source.pixels, ['the red circle'], { steps: 1, boxPrior: false }),
        () => cachedEngine.ground(source.pixels, ['the red circle'], { steps: 1 }),
        2,
        runs,
      );
      const planForwards = { none: 0, prior: 0 };
      let boxes = 0;
      const planTiming = await pairTiming(
        ['none', 'prior'],
        async () => (planForwards.none = (await cachedEngine.plan('a red circle left of a blue square', { boxPrior: false })).forwards),
        async () => {
          const r = await cachedEngine.plan('a red circle left of a blue square');
          planForwards.prior = r.forwards;
          boxes = r.layout.length;
        },
        1,
        runs,
      );
      boxPrior = { ground: groundTiming, plan: { ...planTiming, forwards: planForwards, boxes } };
    }
    // The prompt cache: one world scene per question (image encoded once, cached: only decoding is compared).
    const rng = new Rng(20261127);
    const questions = Array.from({ length: 24 }, () => {
      const scene = generateScene(rng);
      const q = sampleQuestion(rng, scene);
      return { pixels: render(scene), text: q.text, answer: q.answer };
    });
    // Room for every question's image: with fewer, every question's first call would encode its
    // image again (about 10 ms, in either mode), and the medians would compare encodings.
    const answerEngine = new UnderstandingEngine(und, { imageCacheSize: questions.length });
    const agree = { same: 0, cache: 0, noCache: 0 };
    for (const q of questions) {
      const [plain, cached] = [
        await answerEngine.understand(q.pixels, q.text),
        await answerEngine.understand(q.pixels, q.text, { promptCache: true }),
      ];
      if (plain.text === cached.text) agree.same += 1;
      if (scoreAnswer(plain.text, q.answer)) agree.noCache += 1;
      if (scoreAnswer(cached.text, q.answer)) agree.cache += 1;
    }
    let turn = 0;
    const cacheTiming = await pairTiming(
      ['noCache', 'cache'],
      () => {
        const q = questions[turn % questions.length];
        return answerEngine.understand(q.pixels, q.text);
      },
      () => {
        const q = questions[turn++ % questions.length];
        return answerEngine.understand(q.pixels, q.text, { promptCache: true });
      },
      2,
      runs * 2,
    );
    if (answerEngine.imageEncodes !== questions.length) {
      throw new Error(
        `the answers encoded ${answerEngine.imageEncodes} images for ${questions.length} questions: timings would include encodings`,
      );
    }
    const promptCache = {
      ...cacheTiming,
      ratio: round(1 / cacheTiming.ratio),
      questions: questions.length,
      sameAnswerShare: round(agree.same / questions.length),
      sameAnswerCorrect: { cache: round(agree.cache / questions.length), noCache: round(agree.noCache / questions.length) },
    };
    return {
      promptCache,
      boxPrior,
      edit,
      feedback,
      understand,
      ground,
      groundOneStepSpeedup: {
        ...groundOneStepSpeedup,
        ratio: round(1 / groundOneStepSpeedup.ratio),
        forwards,
        sameBoxShare: round(same / refs.length),
      },
      groundOneStepSpeedupCached: { ...groundOneStepSpeedupCached, ratio: round(1 / groundOneStepSpeedupCached.ratio) },
      groundTwoRefs,
      groundByBoxes,
      corrections: { ...corrections, sweeps: all.manifest.sampling.correction_sweeps ?? 0, steps: correctionSteps },
    };
  } finally {
    remote.close();
  }
}
