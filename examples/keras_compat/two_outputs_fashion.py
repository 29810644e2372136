"""A functional model with two outputs on Fashion-MNIST: the category
(10 classes) and whether the item is footwear (sandal, sneaker, ankle boot),
one loss per output in a dict, weighted, with per-output metrics."""

import numpy as np

import fromzero as keras
from fromzero import layers

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255
footwear_train = np.isin(y_train, [5, 7, 9]).astype("float32")
footwear_test = np.isin(y_test, [5, 7, 9]).astype("float32")

image = keras.Input(shape=(784,), name="image")
features = layers.Dense(256, activation="relu")(image)
features = layers.Dropout(0.2)(features)
features = layers.Dense(128, activation="relu")(features)
category = layers.Dense(10, activation="softmax", name="category")(features)
footwear = layers.Dense(1, activation="sigmoid", name="footwear")(features)
model = keras.Model(inputs=image, outputs=[category, footwear])

model.compile(optimizer="adam",
              loss={"category": "sparse_categorical_crossentropy",
                    "footwear": "binary_crossentropy"},
              loss_weights={"category": 1.0, "footwear": 0.2},
              metrics={"category": ["accuracy"], "footwear": ["accuracy"]})
model.fit(x_train, {"category": y_train, "footwear": footwear_train}, batch_size=64, epochs=4,
          validation_split=0.1, verbose=2)
results = model.evaluate(x_test, {"category": y_test, "footwear": footwear_test}, verbose=0,
                         return_dict=True)
print("footwear accuracy:", round(float(results["footwear_accuracy"]), 4))
print(f"test accuracy: {results['category_accuracy']:.4f}")
