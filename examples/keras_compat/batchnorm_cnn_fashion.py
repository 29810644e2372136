"""A CNN with batch normalization on Fashion-MNIST: Conv2D → BatchNormalization
→ ReLU, average pooling, dropout; class weights on the fit."""

import numpy as np

import fromzero as keras
from fromzero import layers

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[..., np.newaxis].astype("float32") / 255
x_test = x_test[..., np.newaxis].astype("float32") / 255

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(16, 3, padding="same", use_bias=False),
    layers.BatchNormalization(),
    layers.ReLU(),
    layers.AveragePooling2D(2),
    layers.Conv2D(32, 3, padding="same", use_bias=False),
    layers.BatchNormalization(),
    layers.ReLU(),
    layers.MaxPooling2D(2),
    layers.Flatten(),
    layers.Dropout(0.3),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
class_weight = {c: 1.0 for c in range(10)}
class_weight[6] = 1.5  # shirts are the class most often confused
model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1, verbose=2,
          class_weight=class_weight)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy: {accuracy:.4f}")
