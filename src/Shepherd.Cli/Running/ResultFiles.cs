using Shepherd.Cli.Commands;

namespace Shepherd.Cli.Running;

/// <summary>
/// The output and error files of a run, opened as <c>.partial</c> files beside their targets
/// before anything is imported or sent, so a folder that does not exist or cannot be written is
/// found before a single request is paid for. They are written at the end and moved over the
/// targets, so a kill never leaves a half file; a run that ends without writing them removes them.
/// </summary>
internal sealed class ResultFiles : IAsyncDisposable
{
    private readonly FileStream _output;
    private readonly FileStream _errors;
    private bool _written;

    private ResultFiles(string outputPath, string errorsPath, FileStream output, FileStream errors)
    {
        OutputPath = outputPath;
        ErrorsPath = errorsPath;
        _output = output;
        _errors = errors;
    }

    public string OutputPath { get; }

    public string ErrorsPath { get; }

    /// <summary>
    /// Opens both <c>.partial</c> files. Refuses (as a usage error) a target that is a folder, is
    /// in a folder that does not exist, cannot be written, or is the input, the state file or the other target.
    /// </summary>
    public static ResultFiles Open(string outputPath, string errorsPath, string inputPath, string statePath)
    {
        Check("--output", outputPath, inputPath, statePath);
        Check("--errors", errorsPath, inputPath, statePath);
        if (string.Equals(outputPath, errorsPath, StringComparison.Ordinal))
        {
            throw new UsageException($"--output and --errors both name {Shown(outputPath)}; successes and failures go to two files.");
        }

        var output = Create("--output", outputPath);
        try
        {
            return new ResultFiles(outputPath, errorsPath, output, Create("--errors", errorsPath));
        }
        catch
        {
            output.Dispose();
            File.Delete(outputPath + ".partial");
            throw;
        }
    }

    /// <summary>Writes both files with <paramref name="write"/> and moves them over their targets.</summary>
    public async Task<T> WriteAsync<T>(Func<Stream, Stream, Task<T>> write)
    {
        var result = await write(_output, _errors);
        await _output.DisposeAsync();
        await _errors.DisposeAsync();
        File.Move(_output.Name, OutputPath, overwrite: true);
        File.Move(_errors.Name, ErrorsPath, overwrite: true);
        _written = true;
        return result;
    }

    public async ValueTask DisposeAsync()
    {
        await _output.DisposeAsync();
        await _errors.DisposeAsync();
        if (!_written)
        {
            File.Delete(_output.Name);
            File.Delete(_errors.Name);
        }
    }

    private static void Check(string flag, string path, string inputPath, string statePath)
    {
        if (string.Equals(path, inputPath, StringComparison.Ordinal) || string.Equals(path, statePath, StringComparison.Ordinal))
        {
            var what = string.Equals(path, inputPath, StringComparison.Ordinal) ? "the input file" : "the state file";
            throw new UsageException($"{flag} {Shown(path)} is {what}; results go to a file of their own.");
        }

        CheckTarget(flag, path);
    }

    /// <summary>Refuses (as a usage error) a file to write that is a folder, or in a folder that does not exist.</summary>
    public static void CheckTarget(string flag, string path)
    {
        if (Directory.Exists(path))
        {
            throw new UsageException($"{flag} {Shown(path)} is a folder; give a file path in it, such as {Shown(Path.Combine(path, flag == "--state" ? "batch.shepherd.db" : "results.jsonl"))}.");
        }

        var folder = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(folder))
        {
            throw new UsageException($"{flag}: the folder {Shown(folder)} does not exist; create it, or give a path in a folder that does.");
        }
    }

    private static FileStream Create(string flag, string path)
    {
        try
        {
            return new FileStream(path + ".partial", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            throw new UsageException($"{flag}: cannot write {Shown(path)}: {ex.Message}");
        }
    }

    private static string Shown(string path) => ShownPath.Of(path);
}
