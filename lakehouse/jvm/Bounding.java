package dplakehouse;

import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;

/**
 * The contribution bounding of the Spark DP engine (dp/engine_spark.py), in one pass per task over
 * rows already shuffled by privacy unit. Each task gathers its units' rows per metric and partition,
 * bounds each unit - at most maxPartitions[m] of its partitions, chosen uniformly at random; in each
 * at most caps[m] rows, the value sum scaled to the capped count - and totals the bounded
 * contributions per (metric, period, key). Only those totals leave the task.
 *
 * <p>Spark's own operators needed a second pass for the partition sample (an aggregation per unit
 * and partition, then a window sorted per unit: ~1 s of a 1M-row release, measured); here a unit's
 * partitions are few and sit in one small list. The sample keeps the partitions of least priority,
 * a keyed hash of (release seed, unit, period, metric, key): a uniform random subset, the same
 * whatever the order the rows arrive in or the task they are in. A task Spark recomputes (a lost
 * executor, a failed fetch) so keeps its first attempt's sample; a sample drawn in arrival order
 * would let a unit's totals mix two samples, up to twice its partitions.
 *
 * <p>Input columns, as dp/engine_spark.py selects them: unit and unit_check (longs: two independent
 * 64-bit hashes of the unit, which is the pair of them and the period), period_start (date, null for
 * period "none"), then per metric m: key (string), value (double, already clamped), kept (boolean:
 * false for a row outside the metric's public partitions, which is dropped before bounding).
 */
public final class Bounding {
  public static final int ALL_ROWS = -1; // the metric index of the rows read per period (dp.engine_spark)
  private static final int NO_PERIOD = Integer.MIN_VALUE; // period "none": no date is this many days
  private static final int MAX_SELECTED = 8; // a unit's sample keeps up to this many by selection, more by a sort

  /** The schema of what {@link #totals} returns. */
  public static final StructType TOTALS = new StructType()
      .add("m", DataTypes.IntegerType, false)
      .add("period_start", DataTypes.DateType, true)
      .add("key", DataTypes.StringType, true)
      .add("count", DataTypes.LongType, false)
      .add("value_sum", DataTypes.DoubleType, false)
      .add("users", DataTypes.LongType, false);

  private Bounding() {
  }

  /**
   * Bounds every unit of {@code rows} and returns each task's totals (schema {@link #TOTALS}): per
   * (m, period_start, key) the bounded count, value sum and units; m = -1 rows count the rows read
   * per period, unbounded. A (m, period_start, key) recurs once per task that saw it: the caller
   * sums them. {@code seed} keys the partition samples: the caller passes a fresh, secret one per
   * release.
   */
  public static Dataset<Row> totals(Dataset<Row> rows, int[] caps, int[] maxPartitions, long seed) {
    JavaRDD<Row> totals = rows.queryExecution().toRdd().toJavaRDD()
        .mapPartitions((Iterator<InternalRow> it) -> new Task(caps, maxPartitions, seed).run(it).iterator());
    return rows.sparkSession().createDataFrame(totals, TOTALS);
  }

  /**
   * A unit's partitions of one metric, as key ids: almost always one or two, looked up by a scan;
   * past SCANNED of them by an index, so that a unit with a million distinct keys (free text from
   * Bronze) costs a million lookups, not a million scans.
   */
  private static final class Parts {
    static final int SCANNED = 8;
    int[] ids = new int[2];
    long[] rows = new long[2];
    double[] sums = new double[2];
    int size;
    Map<Integer, Integer> index; // key id -> position, once size > SCANNED

    void add(int id, double value) {
      int at = find(id);
      if (at >= 0) {
        rows[at]++;
        sums[at] += value;
        return;
      }
      if (size == ids.length) {
        ids = Arrays.copyOf(ids, 2 * size);
        rows = Arrays.copyOf(rows, 2 * size);
        sums = Arrays.copyOf(sums, 2 * size);
      }
      ids[size] = id;
      rows[size] = 1;
      sums[size] = value;
      if (index != null) {
        index.put(id, size);
      } else if (size == SCANNED) {
        index = new HashMap<>();
        for (int i = 0; i <= size; i++) {
          index.put(ids[i], i);
        }
      }
      size++;
    }

    private int find(int id) {
      if (index != null) {
        Integer at = index.get(id);
        return at == null ? -1 : at;
      }
      for (int i = 0; i < size; i++) {
        if (ids[i] == id) {
          return i;
        }
      }
      return -1;
    }
  }

  /**
   * The task's units, in primitive arrays (a unit and its first partition per metric are a slot of
   * each; measured: objects per unit spent ~2 s in allocation and GC on a 1M-unit release). The
   * few units with a second partition of a metric keep that metric's partitions in a Parts.
   */
  private static final class Units {
    static final int NONE = -1; // firstIds: the unit has no row of the metric
    static final int MANY = -2; // firstIds: the unit has several partitions of the metric, in overflow
    final int metrics;
    int size;
    int[] table = new int[1 << 7]; // open addressing by unit id: slot + 1, 0 for empty
    long[] unitIds = new long[1 << 6];
    long[] unitChecks = new long[1 << 6];
    int[] periods = new int[1 << 6];
    long[] rows = new long[1 << 6];
    int[] firstIds;
    long[] firstRows;
    double[] firstSums;
    final Map<Integer, Parts> overflow = new HashMap<>(); // by slot * metrics + m

    Units(int metrics) {
      this.metrics = metrics;
      firstIds = new int[(1 << 6) * metrics];
      firstRows = new long[(1 << 6) * metrics];
      firstSums = new double[(1 << 6) * metrics];
    }

    /**
     * The slot of (unit, unit check, period), a new one on its first row. Two units merged into one
     * would be bounded jointly, and a neighbouring dataset without one of them could then move the
     * other's contributions to partitions the merged unit did not keep: up to twice the sensitivity.
     * So a unit is its two independent 64-bit hashes (both collide with p ~ n^2 / 2^129) and its
     * period (two (user, period) pairs never share a period, whatever their hashes).
     */
    int slot(long unitId, long unitCheck, int period) {
      int mask = table.length - 1;
      int h = (int) (unitId ^ (unitId >>> 32)) & mask; // the unit id is a 64-bit hash already
      while (table[h] != 0) {
        int slot = table[h] - 1;
        if (unitIds[slot] == unitId && unitChecks[slot] == unitCheck && periods[slot] == period) {
          return slot;
        }
        h = (h + 1) & mask;
      }
      int slot = size++;
      if (slot == unitIds.length) {
        grow();
        return slotAfterGrow(unitId, unitCheck, slot, period);
      }
      table[h] = slot + 1;
      init(slot, unitId, unitCheck, period);
      return slot;
    }

    private int slotAfterGrow(long unitId, long unitCheck, int slot, int period) {
      int mask = table.length - 1;
      int h = (int) (unitId ^ (unitId >>> 32)) & mask;
      while (table[h] != 0) {
        h = (h + 1) & mask;
      }
      table[h] = slot + 1;
      init(slot, unitId, unitCheck, period);
      return slot;
    }

    private void init(int slot, long unitId, long unitCheck, int period) {
      unitIds[slot] = unitId;
      unitChecks[slot] = unitCheck;
      periods[slot] = period;
      Arrays.fill(firstIds, slot * metrics, (slot + 1) * metrics, NONE);
    }

    /** Doubles the slots and the table (kept at most half full), and re-inserts every unit. */
    private void grow() {
      int capacity = 2 * unitIds.length;
      unitIds = Arrays.copyOf(unitIds, capacity);
      unitChecks = Arrays.copyOf(unitChecks, capacity);
      periods = Arrays.copyOf(periods, capacity);
      rows = Arrays.copyOf(rows, capacity);
      firstIds = Arrays.copyOf(firstIds, capacity * metrics);
      firstRows = Arrays.copyOf(firstRows, capacity * metrics);
      firstSums = Arrays.copyOf(firstSums, capacity * metrics);
      table = new int[2 * capacity];
      int mask = table.length - 1;
      for (int slot = 0; slot < size - 1; slot++) { // the new unit (size - 1) is placed by the caller
        int h = (int) (unitIds[slot] ^ (unitIds[slot] >>> 32)) & mask;
        while (table[h] != 0) {
          h = (h + 1) & mask;
        }
        table[h] = slot + 1;
      }
    }

    void add(int slot, int m, int id, double value) {
      int i = slot * metrics + m;
      if (firstIds[i] == NONE) {
        firstIds[i] = id;
        firstRows[i] = 1;
        firstSums[i] = value;
      } else if (firstIds[i] == id) {
        firstRows[i]++;
        firstSums[i] += value;
      } else {
        Parts parts = overflow.get(i);
        if (parts == null) {
          parts = new Parts();
          parts.ids[0] = firstIds[i];
          parts.rows[0] = firstRows[i];
          parts.sums[0] = firstSums[i];
          parts.size = 1;
          overflow.put(i, parts);
          firstIds[i] = MANY;
        }
        parts.add(id, value);
      }
    }
  }

  /** The bounded totals of one (metric, period, key) in the task. */
  private static final class Total {
    long count;
    double sum;
    long users;
  }

  /** One task's bounding: its units, and per metric a dictionary of the keys it saw. */
  private static final class Task {
    final int[] caps;
    final int[] maxPartitions;
    final long seed;
    final List<Map<UTF8String, Integer>> ids = new ArrayList<>();
    final List<List<String>> keys = new ArrayList<>();
    final List<List<Long>> keyHashes = new ArrayList<>();

    Task(int[] caps, int[] maxPartitions, long seed) {
      this.caps = caps;
      this.maxPartitions = maxPartitions;
      this.seed = seed;
      for (int m = 0; m < caps.length; m++) {
        ids.add(new HashMap<>());
        keys.add(new ArrayList<>());
        keyHashes.add(new ArrayList<>());
      }
    }

    /** The key's id for metric m; a key is copied once per task (the row's bytes are reused). */
    int id(int m, UTF8String key) {
      Integer id = ids.get(m).get(key);
      if (id == null) {
        id = keys.get(m).size();
        ids.get(m).put(key == null ? null : key.copy(), id);
        keys.get(m).add(key == null ? null : key.toString());
        keyHashes.get(m).add(key == null ? NULL_KEY : hash(key.getBytes()));
      }
      return id;
    }

    /** The priority of a unit's partition in the sample: the least maxPartitions[m] are kept. */
    long priority(long unitId, int period, int m, int keyId) {
      long h = mix(mix(mix(seed ^ unitId) ^ period) ^ m);
      return mix(h ^ keyHashes.get(m).get(keyId));
    }

    List<Row> run(Iterator<InternalRow> it) {
      int metrics = caps.length;
      Units units = new Units(metrics);
      while (it.hasNext()) {
        InternalRow row = it.next();
        int slot = units.slot(row.getLong(0), row.getLong(1), row.isNullAt(2) ? NO_PERIOD : row.getInt(2));
        units.rows[slot]++;
        for (int m = 0; m < metrics; m++) {
          int col = 3 + 3 * m;
          if (row.getBoolean(col + 2)) {
            units.add(slot, m, id(m, row.isNullAt(col) ? null : row.getUTF8String(col)), row.getDouble(col + 1));
          }
        }
      }
      Map<Integer, long[]> rowsRead = new HashMap<>(); // per period
      List<Map<Long, Total>> totals = new ArrayList<>(); // per metric, by (period, key id)
      for (int m = 0; m < metrics; m++) {
        totals.add(new HashMap<>());
      }
      Parts single = new Parts();
      single.size = 1;
      int[] order = new int[2];
      long[] priorities = new long[2];
      for (int slot = 0; slot < units.size; slot++) {
        int period = units.periods[slot];
        rowsRead.computeIfAbsent(period, p -> new long[1])[0] += units.rows[slot];
        for (int m = 0; m < metrics; m++) {
          int i = slot * metrics + m;
          Parts parts;
          if (units.firstIds[i] == Units.NONE) {
            continue;
          } else if (units.firstIds[i] == Units.MANY) {
            parts = units.overflow.get(i);
          } else {
            parts = single;
            single.ids[0] = units.firstIds[i];
            single.rows[0] = units.firstRows[i];
            single.sums[0] = units.firstSums[i];
          }
          if (order.length < parts.size) {
            order = new int[parts.size];
            priorities = new long[parts.size];
          }
          for (int k = 0; k < parts.size; k++) {
            order[k] = k;
          }
          int kept = Math.min(maxPartitions[m], parts.size);
          if (kept < parts.size) {
            for (int k = 0; k < parts.size; k++) {
              priorities[k] = priority(units.unitIds[slot], period, m, parts.ids[k]);
            }
            leastFirst(order, priorities, parts.size, kept);
          }
          for (int k = 0; k < kept; k++) {
            int p = order[k];
            long n = parts.rows[p];
            long count = Math.min(n, caps[m]);
            Total t = totals.get(m).computeIfAbsent(((long) period << 32) | (parts.ids[p] & 0xFFFFFFFFL),
                key -> new Total());
            t.count += count;
            // over the cap: count rows at the mean of the unit's n values (a uniform sample's expected
            // sum); x * n / n can be x plus an ulp, so the sum is scaled only when capped
            t.sum += n > count ? parts.sums[p] * count / n : parts.sums[p];
            t.users++;
          }
        }
      }
      List<Row> out = new ArrayList<>();
      for (Map.Entry<Integer, long[]> e : rowsRead.entrySet()) {
        out.add(RowFactory.create(ALL_ROWS, date(e.getKey()), null, e.getValue()[0], 0.0, 0L));
      }
      for (int m = 0; m < metrics; m++) {
        for (Map.Entry<Long, Total> e : totals.get(m).entrySet()) {
          Total t = e.getValue();
          String key = keys.get(m).get((int) (e.getKey() & 0xFFFFFFFFL));
          out.add(RowFactory.create(m, date((int) (e.getKey() >> 32)), key, t.count, t.sum, t.users));
        }
      }
      return out;
    }

    /**
     * Puts the positions of the {@code kept} least priorities first in {@code order} (which holds
     * 0..size-1): a selection for the usual one or two, a sort for many (a unit with thousands of
     * partitions, sampled to hundreds, must not cost their product).
     */
    static void leastFirst(int[] order, long[] priorities, int size, int kept) {
      if (kept > MAX_SELECTED) {
        long[] sorted = Arrays.copyOf(priorities, size);
        Arrays.sort(sorted);
        long last = sorted[kept - 1]; // keep those below it, then those equal to it until `kept`
        int below = 0;
        for (int k = 0; k < size; k++) {
          if (priorities[k] < last) {
            order[below++] = k;
          }
        }
        for (int k = 0; k < size && below < kept; k++) {
          if (priorities[k] == last) {
            order[below++] = k;
          }
        }
        return;
      }
      for (int k = 0; k < kept; k++) {
        int least = k;
        for (int j = k + 1; j < size; j++) {
          if (priorities[order[j]] < priorities[order[least]]) {
            least = j;
          }
        }
        int p = order[least];
        order[least] = order[k];
        order[k] = p;
      }
    }

    private static LocalDate date(int period) {
      return period == NO_PERIOD ? null : LocalDate.ofEpochDay(period);
    }
  }

  private static final long NULL_KEY = 0x6E756C6C6B6579L; // the hash of a null key: "nullkey"

  /** FNV-1a over the key's bytes, then mixed: 64 bits, so a unit's keys do not tie. */
  static long hash(byte[] bytes) {
    long h = 0xCBF29CE484222325L;
    for (byte b : bytes) {
      h = (h ^ (b & 0xFF)) * 0x100000001B3L;
    }
    return mix(h);
  }

  /** SplitMix64's finaliser (Steele, Lea and Flood 2014): each input bit flips about half the output's. */
  static long mix(long z) {
    z += 0x9E3779B97F4A7C15L;
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }
}
