"""The TensorFlow beginner quickstart, in Keras 3: Flatten(input_shape=...),
logits trained with from_logits=True, then Sequential([model, Softmax()]) for
probabilities."""

import fromzero as keras

keras.utils.set_random_seed(0)
mnist = keras.datasets.mnist
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0

model = keras.models.Sequential([
    keras.layers.Flatten(input_shape=(28, 28)),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(10),
])
predictions = model(x_train[:1])
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
print("untrained loss:", float(loss_fn(y_train[:1], predictions)))
model.compile(optimizer="adam", loss=loss_fn, metrics=["accuracy"])
model.fit(x_train, y_train, epochs=5, verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=2)

probability_model = keras.Sequential([model, keras.layers.Softmax()])
probabilities = probability_model.predict(x_test[:5], verbose=0)
print("probabilities of the first test image:", probabilities[0].round(3))
print(f"test accuracy: {accuracy:.4f}")
