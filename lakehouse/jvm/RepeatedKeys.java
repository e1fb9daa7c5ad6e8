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
 * <p>The result is the repeated keys, ascending, each once, as 8-byte big-endian values; null when
 * there were more than {@code maxKeys} keys (the driver holds all of them at once, twice while it
 * sorts them), and the caller must count them otherwise.
 */
public final class RepeatedKeys extends Aggregator<Long, RepeatedKeys.Keys, byte[]> {
  private static final long serialVersionUID = 1L;
  private final int maxKeys;

  public RepeatedKeys(int maxKeys) {
    this.maxKeys = maxKeys;
  }

  /** The keys seen so far, in arrival order; none kept once there are too many (overflow). */
  public static final class Keys implements Serializable {
    private static final long serialVersionUID = 1L;
    private transient long[] values = new long[256];
    private transient int size;
    private transient boolean overflow;

    void add(long key, int maxKeys) {
      if (overflow) {
        return;
      }
      if (size == maxKeys) {
        drop();
        return;
      }
      if (size == values.length) {
        values = Arrays.copyOf(values, (int) Math.min((long) values.length * 2, maxKeys));
      }
      values[size++] = key;
    }

    void addAll(Keys other, int maxKeys) {
      if (overflow || other.overflow || (long) size + other.size > maxKeys) {
        drop();
        return;
      }
      if (size + other.size > values.length) {
        values = Arrays.copyOf(values, (int) Math.min(Math.max((long) size + other.size, (long) values.length * 2),
            maxKeys));
      }
      System.arraycopy(other.values, 0, values, size, other.size);
      size += other.size;
    }

    private void drop() {
      overflow = true;
      values = new long[0];
      size = 0;
    }

    // only the keys, not the array's spare capacity
    private void writeObject(ObjectOutputStream out) throws IOException {
      out.defaultWriteObject();
      out.writeBoolean(overflow);
      out.writeInt(size);
      for (int i = 0; i < size; i++) {
        out.writeLong(values[i]);
      }
    }

    private void readObject(ObjectInputStream in) throws IOException, ClassNotFoundException {
      in.defaultReadObject();
      overflow = in.readBoolean();
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
      keys.add(key, maxKeys);
    }
    return keys;
  }

  @Override
  public Keys merge(Keys a, Keys b) {
    a.addAll(b, maxKeys);
    return a;
  }

  @Override
  public byte[] finish(Keys keys) {
    if (keys.overflow) {
      return null;
    }
    long[] sorted = Arrays.copyOf(keys.values, keys.size);
    Arrays.sort(sorted);
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

  @Override
  public Encoder<Keys> bufferEncoder() {
    return Encoders.javaSerialization(Keys.class);
  }

  @Override
  public Encoder<byte[]> outputEncoder() {
    return Encoders.BINARY();
  }

  /** Registers the aggregate as the session's temporary function {@code name}. */
  public static void register(SparkSession spark, String name, int maxKeys) {
    spark.udf().register(name, functions.udaf(new RepeatedKeys(maxKeys), Encoders.LONG()));
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
