// MLRun's ModelSelector from the seed, ported line for line; graph.yaml names it by module and export.
import { ModelSelector } from 'rxserve';

export class MyClassifier extends ModelSelector {
  constructor({ models }) {
    super();
    this.models = structuredClone(models);
  }
  select(event) {
    const currentModels = event.body.models;
    if (currentModels && currentModels.every((m) => this.models.includes(m))) {
      return currentModels;
    }
    return [];
  }
}
