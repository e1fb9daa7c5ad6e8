package dplakehouse;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.LongType;

/**
 * The 64-bit keys that occur more than once in a frame's one long column (nulls ignored): the
 * ingest's dedupe asks it for the session id hashes of a checkpointed batch, so it knows the few
 * rows to resolve. One pass over the rows as Spark holds them, each task's keys in a primitive
 * array, the driver sorting them once. (Spark's own count per key is two jobs with a shuffle; an
 * aggregate of our own observed on the checkpoint's job cost ~1.5 s of 1M rows in Spark's
 * per-row encoders, measured.)
 */
public final class RepeatedKeys {
  private RepeatedKeys() {
  }

  /**
   * The repeated keys of {@code keys}' first column, ascending, each once, as 8-byte big-endian
   * values; null when it holds more than {@code maxKeys} keys (the driver holds all of them at once,
   * twice while it sorts them), and the caller must count them otherwise.
   */
  public static byte[] of(Dataset<Row> keys, int maxKeys) {
    if (!(keys.schema().fields()[0].dataType() instanceof LongType)) {
      throw new IllegalArgumentException("RepeatedKeys.of reads a long column, not " + keys.schema().fields()[0]);
    }
    List<long[]> perTask = keys.queryExecution().toRdd().toJavaRDD()
        .mapPartitions((Iterator<InternalRow> it) -> Collections.singletonList(read(it, maxKeys)).iterator())
        .collect();
    long total = 0;
    for (long[] task : perTask) {
      if (task == null) {
        return null;
      }
      total += task.length;
    }
    if (total > maxKeys) {
      return null;
    }
    long[] sorted = new long[(int) total];
    int at = 0;
    for (long[] task : perTask) {
      System.arraycopy(task, 0, sorted, at, task.length);
      at += task.length;
    }
    Arrays.sort(sorted);
    return repeated(sorted);
  }

  /** A task's keys, or null past maxKeys. */
  private static long[] read(Iterator<InternalRow> rows, int maxKeys) {
    long[] values = new long[1024];
    int size = 0;
    while (rows.hasNext()) {
      InternalRow row = rows.next();
      if (row.isNullAt(0)) {
        continue;
      }
      if (size == maxKeys) {
        return null;
      }
      if (size == values.length) {
        values = Arrays.copyOf(values, (int) Math.min((long) size * 2, maxKeys));
      }
      values[size++] = row.getLong(0);
    }
    return Arrays.copyOf(values, size);
  }

  /** Each key that sorted holds more than once, once. */
  static byte[] repeated(long[] sorted) {
    int repeats = 0;
    for (int i = 1; i < sorted.length; i++) {
      if (firstRepeat(sorted, i)) {
        repeats++;
      }
    }
    ByteBuffer repeated = ByteBuffer.allocate(8 * repeats);
    for (int i = 1; i < sorted.length; i++) {
      if (firstRepeat(sorted, i)) {
        repeated.putLong(sorted[i]);
      }
    }
    return repeated.array();
  }

  /** Whether sorted[i] is the second key of a run of equal keys. */
  private static boolean firstRepeat(long[] sorted, int i) {
    return sorted[i] == sorted[i - 1] && (i == 1 || sorted[i - 1] != sorted[i - 2]);
  }

  /** {@code key IN (the keys of a result of of())}: Spark's optimizer makes it a hash set lookup. */
  public static Column isIn(Column key, byte[] repeated) {
    ByteBuffer buffer = ByteBuffer.wrap(repeated);
    List<Long> keys = new ArrayList<>(repeated.length / 8);
    while (buffer.remaining() >= 8) {
      keys.add(buffer.getLong());
    }
    return key.isInCollection(keys);
  }
}
