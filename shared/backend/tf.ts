// The one import of TensorFlow.js for the whole project. '@tensorflow/tfjs' is used rather than
// tfjs-core because only its Node bundle registers the gradients (tfjs-core's ESM build, which holds
// register_all_gradients, cannot be loaded by Node). Backends are chosen by backend/select.ts.
import * as tf from '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;
