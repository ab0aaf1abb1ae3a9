/* loader: being written */
