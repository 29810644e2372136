"""A functional model with residual connections (layers.Add) on
Fashion-MNIST: x ← relu(x + Dense(Dropout(Dense(x)))) twice."""

import fromzero as keras
from fromzero import layers

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0

inputs = keras.Input(shape=(28, 28), name="image")
x = layers.Flatten()(inputs)
x = layers.Dense(256, activation="relu")(x)
for block in range(2):
    h = layers.Dense(256, activation="relu", name=f"block{block}_dense")(x)
    h = layers.Dropout(0.1)(h)
    h = layers.Dense(256, name=f"block{block}_projection")(h)
    x = layers.Add(name=f"block{block}_add")([x, h])
    x = layers.Activation("relu")(x)
outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs, name="residual_mlp")
model.summary()

model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=64, epochs=4, validation_split=0.1, verbose=2)
results = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
print(f"test accuracy: {results['accuracy']:.4f}")
