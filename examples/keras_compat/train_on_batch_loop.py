"""A hand-written training loop over shuffled minibatches with
train_on_batch, then test_on_batch and predict_on_batch."""

import numpy as np

import fromzero as keras

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255

model = keras.Sequential([
    keras.Input(shape=(784,)),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])

rng = np.random.default_rng(0)
batch_size = 64
for epoch in range(3):
    order = rng.permutation(len(x_train))
    losses = []
    for start in range(0, len(x_train), batch_size):
        index = order[start:start + batch_size]
        loss, accuracy = model.train_on_batch(x_train[index], y_train[index])
        losses.append(loss)
    print(f"epoch {epoch + 1}: mean batch loss {np.mean(losses):.4f}")

test_loss, test_accuracy = model.test_on_batch(x_test[:1000], y_test[:1000])
print(f"first 1000 test images: loss {test_loss:.4f}, accuracy {test_accuracy:.4f}")
predictions = model.predict_on_batch(x_test[:10])
print("predicted:", np.argmax(predictions, axis=1), "true:", y_test[:10])
accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
print(f"test accuracy: {accuracy:.4f}")
