/* ewplug: being written */
