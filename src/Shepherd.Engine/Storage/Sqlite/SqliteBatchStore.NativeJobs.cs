using Microsoft.Data.Sqlite;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <inheritdoc />
    public Task<NativeJob> AddNativeJobAsync(string batchId, string upstream, string providerBatchId, IReadOnlyList<long> itemIds, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(providerBatchId);
        ArgumentNullException.ThrowIfNull(itemIds);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var id = (long)Scalar(writer, StoreSql.InsertNativeJob, tx,
                ("@batch", batchId), ("@upstream", upstream), ("@provider", providerBatchId), ("@now", now.ToUnixTimeMilliseconds()))!;
            using var insert = Prepare(writer, tx, "INSERT INTO native_job_items (job_id, item_id) VALUES ($job, $item)", ("$job", SqliteType.Integer), ("$item", SqliteType.Integer));
            insert.Parameters["$job"].Value = id;
            foreach (var item in itemIds)
            {
                insert.Parameters["$item"].Value = item;
                insert.ExecuteNonQuery();
            }

            tx.Commit();
            return StoreRows.NewNativeJob(id, batchId, upstream, providerBatchId, now);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadNativeJobs(connection, StoreSql.OpenNativeJobs);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await using var connection = Open();
        return ReadNativeJobs(connection, StoreSql.NativeJobsOfBatch, ("@batch", batchId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.NativeJobItems, r => r.GetInt64(0), ("@job", jobId));

    /// <inheritdoc />
    public Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken) =>
        WriteAsync(writer => Execute(writer, StoreSql.UpdateNativeJob, null,
            ("@id", jobId), ("@status", (int)status), ("@cancel", cancelRequested ? 1 : 0)), cancellationToken);

    private static List<NativeJob> ReadNativeJobs(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadNativeJob, sql, parameters);
}
