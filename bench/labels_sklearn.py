#!/usr/bin/python3
"""scikit-learn's figures for `npm run bench:labels`: 1-nearest-neighbour cross-validation on the sample orchard
checked its labels on.

  labels_sklearn.py SAMPLE.csv FOLDS

SAMPLE.csv: a header, then label,pc_1,...,pc_k per row. Prints one JSON object: the mean of
cross_val_score(KNeighborsClassifier(1), X, y, cv=FOLDS) (an int cv on a classifier is StratifiedKFold without
shuffling), the per-class recall and the off-diagonal cells of the confusion matrix of cross_val_predict with the
same folds. Needs Debian's python3-sklearn (run with /usr/bin/python3).
"""
import csv
import json
import sys

try:
    import numpy as np
    import sklearn
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import cross_val_predict, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
except ImportError as error:
    print(json.dumps({"error": True, "message": f"{error}: apt-get install python3-sklearn python3-numpy"}))
    sys.exit(1)

path, folds = sys.argv[1], int(sys.argv[2])
with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))[1:]
y = np.array([row[0] for row in rows])
X = np.array([[float(v) for v in row[1:]] for row in rows])
scores = cross_val_score(KNeighborsClassifier(n_neighbors=1), X, y, cv=folds)
predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=1), X, y, cv=folds)
classes = sorted(set(y.tolist()))
matrix = confusion_matrix(y, predicted, labels=classes)
recall = {c: float(matrix[i, i] / matrix[i].sum()) for i, c in enumerate(classes)}
confusions = [[classes[i], classes[j], int(matrix[i, j])] for i in range(len(classes)) for j in range(len(classes)) if i != j and matrix[i, j]]
print(json.dumps({"sklearn": sklearn.__version__, "rows": len(y), "accuracy": float(scores.mean()), "foldScores": scores.tolist(), "recall": recall, "confusions": confusions}))
