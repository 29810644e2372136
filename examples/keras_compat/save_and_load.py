"""Save a trained functional model, load it back, check it predicts the
same, train the loaded copy further."""

import numpy as np

import fromzero as keras

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255

inputs = keras.Input(shape=(784,), name="digits")
x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer=keras.optimizers.RMSprop(), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=64, epochs=2, verbose=2)

model.save("mnist_model.keras")
restored = keras.models.load_model("mnist_model.keras")
np.testing.assert_allclose(restored.predict(x_test, verbose=0), model.predict(x_test, verbose=0),
                           rtol=1e-6, atol=1e-6)
print("the restored model predicts what the saved one did")
restored.fit(x_train, y_train, batch_size=64, epochs=1, verbose=2)
loss, accuracy = restored.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy: {accuracy:.4f}")
