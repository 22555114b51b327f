// Three small iris classifiers (classes 0 setosa, 1 versicolor, 2 virginica) over rows of
// [sepal length, sepal width, petal length, petal width] in cm. Plain JavaScript: thread_pool
// workers import this module by path.
import { Model } from 'rxserve';

/** A decision stump per class boundary on one feature: below `cuts[0]` → 0, below `cuts[1]` → 1, else 2. */
export class Stump extends Model {
  predict(body) {
    const { feature, cuts } = this.params;
    return body.inputs.map((row) => (row[feature] < cuts[0] ? 0 : row[feature] < cuts[1] ? 1 : 2));
  }

  /** A custom V2 operation: POST /v2/models/<name>/thresholds. */
  op_thresholds() {
    return { feature: this.params.feature, cuts: this.params.cuts };
  }
}

/** The class whose centroid is nearest (squared Euclidean distance). */
export class NearestCentroid extends Model {
  predict(body) {
    return body.inputs.map((row) => nearest(this.params.centroids, row).label);
  }

  /** V2 explain: per row, each feature's share of the distance to the runner-up class minus the winner's. */
  explain(body) {
    return body.inputs.map((row) => {
      const { label, second } = nearest(this.params.centroids, row);
      const win = this.params.centroids[label];
      const other = this.params.centroids[second];
      return row.map((x, f) => Math.round(((x - other[f]) ** 2 - (x - win[f]) ** 2) * 100) / 100);
    });
  }
}

function nearest(centroids, row) {
  const distances = centroids.map((c) => c.reduce((sum, v, f) => sum + (row[f] - v) ** 2, 0));
  const order = distances.map((d, label) => ({ d, label })).sort((a, b) => a.d - b.d);
  return { label: order[0].label, second: order[1].label };
}
