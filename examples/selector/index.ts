// Model selectors: MLRun's seed MyClassifier ported, a function selector, selectModels alone,
// and a bad selection failing only its own event.
import { from, lastValueFrom, toArray } from 'rxjs';
import { ModelSelector, asEvents, modelRunner, registerSelector, selectModels, type ModelEntry, type ServingEvent } from 'rxserve';

// From the seed, nearly line for line:
//   class MyClassifier(ModelSelector):
//       def __init__(self, models): self.models = deepcopy(models)
//       def select(self, event, available_models):
//           current_models = event.body.get("models")
//           if current_models and set(current_models).issubset(set(self.models)):
//               return current_models
//           return []
class MyClassifier extends ModelSelector {
  private readonly models: string[];
  constructor({ models }: { models: string[] }) {
    super();
    this.models = structuredClone(models);
  }
  override select(event: ServingEvent<{ models?: string[] }>, _availableModels: readonly ModelEntry[]) {
    const currentModels = event.body.models;
    if (currentModels && currentModels.every((m) => this.models.includes(m))) {
      return currentModels;
    }
    return [];
  }
}
registerSelector('MyClassifier', MyClassifier);

const models: ModelEntry[] = ['m1', 'm2', 'm3'].map((endpointName) => ({ endpointName, modelClass: 'Model', executionMechanism: 'naive' }));
const bodies = [{ models: ['m1', 'm2'] }, { models: ['m2'] }, { models: ['m3'] }, {}];
let failures = 0;

// 1. The selection stage alone: which models each event would run (no model runs).
console.log("selectModels('MyClassifier') with models ['m1', 'm2']:");
const selections = await lastValueFrom(
  from(bodies).pipe(asEvents(), selectModels('MyClassifier', models, { selectorParams: { models: ['m1', 'm2'] } }), toArray()),
);
for (const { event, selected } of selections) console.log(`  ${JSON.stringify(event.body).padEnd(22)} → [${selected.join(', ')}]`);
if (JSON.stringify(selections.map((s) => s.selected)) !== JSON.stringify([['m1', 'm2'], ['m2'], [], []])) failures++;

// 2. The same selector in a step: outputs keyed by the selected endpoints ({} when none).
const out = await lastValueFrom(
  from(bodies).pipe(asEvents(), modelRunner({ models, selector: 'MyClassifier', selectorParams: { models: ['m1', 'm2'] } }), toArray()),
);
console.log('\nmodelRunner with the same selector:');
for (const e of out) console.log(`  ${JSON.stringify(e.body)}`);

// 3. A function selector; naming a model the step does not have fails only that event.
const checked = await lastValueFrom(
  from([{ pick: ['m3'] }, { pick: ['m9'] }, { pick: null }]).pipe(
    asEvents(),
    modelRunner({ models, selector: (e) => (e.body as { pick: string[] | null }).pick }),
    toArray(),
  ),
);
console.log('\na function selector:');
for (const e of checked)
  console.log(`  ${e.error ? `errored: ${e.error.name}: ${e.error.message}` : `→ ${Object.keys(e.body as object).join(', ')}`}`);
if (checked[1].error?.name !== 'SelectorError' || checked[0].error || checked[2].error) failures++;

if (failures > 0) process.exit(1);
