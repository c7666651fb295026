using Shepherd.Engine.Batches;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Server.Http;

namespace Shepherd.Server.Batches;

/// <summary>
/// What the doors ask of uploaded files: add, get, list, read and delete, each as the caller may:
/// another tenant's file does not exist for the caller, and an upload is held to the smaller of
/// the server's limit and the tenant's.
/// </summary>
internal sealed class FileService(IBatchStore store, ServerOptions options)
{
    /// <summary>The caller's file, or a 404.</summary>
    public async Task<FileRecord> GetAsync(Caller caller, string fileId, CancellationToken cancellationToken)
    {
        var file = await store.GetFileAsync(fileId, cancellationToken);
        return file is not null && caller.Sees(file.Owner)
            ? file
            : throw ApiException.NotFound($"No file found with id '{fileId}'.", "file_id");
    }

    /// <summary>The caller's file, or a 404; and a 400 unless it was uploaded for a batch to read.</summary>
    public async Task<FileRecord> GetInputAsync(Caller caller, string fileId, CancellationToken cancellationToken)
    {
        var file = await GetAsync(caller, fileId, cancellationToken);
        return file.Purpose == "batch"
            ? file
            : throw ApiException.BadRequest($"File '{file.Id}' has purpose \"{file.Purpose}\"; a batch reads a file uploaded with purpose \"batch\".", "input_file_id");
    }

    /// <summary>A page of the caller's files, of <paramref name="purpose"/> when given.</summary>
    public Task<Page<FileRecord>> ListAsync(Caller caller, string? purpose, PageRequest page, CancellationToken cancellationToken) =>
        store.ListFilesAsync(caller.Listing, purpose, page, cancellationToken);

    /// <summary>Stores <paramref name="content"/> as the caller's new batch input named <paramref name="filename"/>, refusing it past the upload limit.</summary>
    public Task<FileRecord> AddAsync(Caller caller, string filename, Stream content, CancellationToken cancellationToken) =>
        store.AddFileAsync(new NewFile(BatchIds.New("file-"), caller.Owner, filename, "batch"), content, Math.Min(options.MaxUploadBytes, caller.Limits?.MaxFileBytes ?? long.MaxValue), cancellationToken);

    /// <summary>The file's content.</summary>
    public Task<Stream> OpenAsync(FileRecord file, CancellationToken cancellationToken) => store.OpenFileAsync(file.Id, cancellationToken);

    /// <summary>Removes the file.</summary>
    public Task DeleteAsync(FileRecord file, CancellationToken cancellationToken) => store.DeleteFileAsync(file.Id, cancellationToken);
}
