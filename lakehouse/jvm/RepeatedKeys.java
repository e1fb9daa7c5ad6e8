package dplakehouse;

import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.expressions.Aggregator;
import org.apache.spark.sql.functions;

/**
 * The 64-bit keys that occur more than once among an aggregate's non-null inputs, as an aggregate
 * function: the ingest observes it on the job that parses and checkpoints a batch (the session id's
 * hash of every valid row), so its dedupe knows the few rows to resolve without two more jobs (a
 * count per key shuffled, then broadcast). Each task keeps its keys in a primitive array (8 bytes a
 * row); the driver merges the tasks' arrays and sorts them once.
 *
 * <p>The result is the repeated keys, ascending, each once, as 8-byte big-endian values.
 */
public final class RepeatedKeys extends Aggregator<Long, RepeatedKeys.Keys, byte[]> {
  private static final long serialVersionUID = 1L;

  /** The keys seen so far, in arrival order. */
  public static final class Keys implements Serializable {
    private static final long serialVersionUID = 1L;
    private transient long[] values = new long[256];
    private transient int size;

    void add(long key) {
      if (size == values.length) {
        values = Arrays.copyOf(values, values.length * 2);
      }
      values[size++] = key;
    }

    void addAll(Keys other) {
      if (size + other.size > values.length) {
        values = Arrays.copyOf(values, Math.max(size + other.size, values.length * 2));
      }
      System.arraycopy(other.values, 0, values, size, other.size);
      size += other.size;
    }

    // only the keys, not the array's spare capacity
    private void writeObject(ObjectOutputStream out) throws IOException {
      out.writeInt(size);
      for (int i = 0; i < size; i++) {
        out.writeLong(values[i]);
      }
    }

    private void readObject(ObjectInputStream in) throws IOException {
      size = in.readInt();
      values = new long[Math.max(size, 256)];
      for (int i = 0; i < size; i++) {
        values[i] = in.readLong();
      }
    }
  }

  @Override
  public Keys zero() {
    return new Keys();
  }

  @Override
  public Keys reduce(Keys keys, Long key) {
    if (key != null) {
      keys.add(key);
    }
    return keys;
  }

  @Override
  public Keys merge(Keys a, Keys b) {
    a.addAll(b);
    return a;
  }

  @Override
  public byte[] finish(Keys keys) {
    long[] sorted = Arrays.copyOf(keys.values, keys.size);
    Arrays.sort(sorted);
    ByteBuffer repeated = ByteBuffer.allocate(8 * sorted.length);
    for (int i = 1; i < sorted.length; i++) {
      // the first repeat of a run of equal keys
      if (sorted[i] == sorted[i - 1] && (i == 1 || sorted[i - 1] != sorted[i - 2])) {
        repeated.putLong(sorted[i]);
      }
    }
    return Arrays.copyOf(repeated.array(), repeated.position());
  }

  @Override
  public Encoder<Keys> bufferEncoder() {
    return Encoders.javaSerialization(Keys.class);
  }

  @Override
  public Encoder<byte[]> outputEncoder() {
    return Encoders.BINARY();
  }

  /** Registers the aggregate as the session's temporary function {@code name}. */
  public static void register(SparkSession spark, String name) {
    spark.udf().register(name, functions.udaf(new RepeatedKeys(), Encoders.LONG()));
  }

  /** {@code key IN (the keys of a result of this aggregate)}: Spark's optimizer makes it a hash set lookup. */
  public static Column isIn(Column key, byte[] repeated) {
    ByteBuffer buffer = ByteBuffer.wrap(repeated);
    List<Long> keys = new ArrayList<>(repeated.length / 8);
    while (buffer.remaining() >= 8) {
      keys.add(buffer.getLong());
    }
    return key.isInCollection(keys);
  }
}
