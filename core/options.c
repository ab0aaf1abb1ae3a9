/* options: being written */
