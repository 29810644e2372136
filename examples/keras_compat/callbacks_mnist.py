"""Training with callbacks: EarlyStopping restoring the best weights,
ModelCheckpoint keeping the best model, ReduceLROnPlateau and CSVLogger; the
best checkpoint loaded back with load_model."""

import fromzero as keras

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255

model = keras.Sequential([
    keras.layers.Dense(256, activation="relu", input_shape=(784,)),
    keras.layers.Dropout(0.3),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
    keras.callbacks.ModelCheckpoint("best_model.keras", monitor="val_accuracy",
                                    save_best_only=True),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
    keras.callbacks.CSVLogger("training_log.csv"),
]
history = model.fit(x_train, y_train, epochs=6, batch_size=64, validation_split=0.2,
                    callbacks=callbacks, verbose=2)
print("epochs run:", len(history.history["loss"]))
with open("training_log.csv") as log:
    print("CSV log:", log.readline().strip())
best = keras.models.load_model("best_model.keras")
loss, accuracy = best.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy: {accuracy:.4f}")
