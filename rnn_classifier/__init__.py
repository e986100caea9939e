"""rnn-classifier: recurrent-network classification of imbalanced time series.

The ML core (data contract, model, losses, training, evaluation) lives in this
package; the CLI, the Kubeflow components and the Katib trials are thin entry
points onto it.
"""

__version__ = "0.1.0"
