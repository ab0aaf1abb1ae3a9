/* zscore: being written */
