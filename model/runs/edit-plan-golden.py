"""test/fixtures/edit-plan-golden.json from an export made with `--edit-plan yes` (test/integration/edit-plan-golden.test.ts).

    cd model && python3 -m lavida_mini.export --checkpoint checkpoints/lavida-o-mini-0.5.0.pt --codebook /tmp/prep/train/codebook.npz \\
        --refiner checkpoints/vq-refiner-0.4.4.pt --golden-data /tmp/prep/eval --out /tmp/pkg050ep --version 0.5.0 --edit-plan yes
    /usr/bin/python3 runs/edit-plan-golden.py /tmp/pkg050ep ../test/fixtures/edit-plan-golden.json

(/tmp/pkg050ep must hold the bundled manifest.json first: golden_tasks checks the package beside its output.) Keeps the
templates the export added and its plan_edit and edit-with-plan cases: the bundled weights never trained those tasks, so
the cases check the runtime's decoding against the reference sampler, not the model's skill.
"""
import json
import sys

pkg, out = sys.argv[1], sys.argv[2]
m = json.load(open(f"{pkg}/manifest.json"))
g = json.load(open(f"{pkg}/tasks-golden.json"))
t = m["tasks"]
doc = {
    "about": __doc__.strip().splitlines()[0] + " Made by model/runs/edit-plan-golden.py (its docstring has the commands).",
    "model": g["model"],
    "tasks": {"plan_edit": t["plan_edit"], "edit_plan": t["edit_plan"], "answer_len": {"plan_edit": t["answer_len"]["plan_edit"]},
              "per_step": {"plan_edit": t["per_step"]["plan_edit"]}},
    "settings": {k: g["settings"][k] for k in ("per_step", "eos_bias", "answer_len")},
    "cases": [c for c in g["cases"] if c["task"] == "plan_edit" or (c["task"] == "edit" and c.get("plan"))],
}
with open(out, "w") as f:
    f.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
print(out, [c["task"] for c in doc["cases"]])
