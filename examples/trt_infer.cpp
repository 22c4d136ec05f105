// Minimal C++ use of a trt-restore engine: load the plugin library, deserialise the engine,
// set input shapes, run once on a CUDA stream and print a checksum of every output.
//
//   trt_restore_infer ENGINE [--plugins libtrt_restore_plugins.so] [--shape NAME=1x3x512x512 ...]
//
// Inputs are filled with a fixed ramp in [-1, 1]; without --shape each input takes the
// optimisation profile's "opt" shape. Builds with engines/plugins/CMakeLists.txt (target
// trt_restore_infer) against TensorRT 10.x or 11.x; links libnvinfer and cudart only: the plugin
// library is loaded at run time through the plugin registry.
#include <NvInferRuntime.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace
{

class Logger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* message) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            std::fprintf(stderr, "[TensorRT] %s\n", message);
        }
    }
};

bool check(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        std::fprintf(stderr, "error: %s: %s\n", what, cudaGetErrorString(status));
        return false;
    }
    return true;
}

size_t elementSize(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT64: return 8;
    default: return 1;
    }
}

int64_t volume(nvinfer1::Dims const& dims)
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

std::string format(nvinfer1::Dims const& dims)
{
    std::ostringstream out;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        out << (i ? "x" : "") << dims.d[i];
    }
    return out.str();
}

bool parseDims(std::string const& text, nvinfer1::Dims& dims)
{
    dims.nbDims = 0;
    std::istringstream in(text);
    std::string part;
    while (std::getline(in, part, 'x'))
    {
        if (part.empty() || dims.nbDims >= nvinfer1::Dims::MAX_DIMS)
        {
            return false;
        }
        dims.d[dims.nbDims++] = std::strtoll(part.c_str(), nullptr, 10);
    }
    return dims.nbDims > 0;
}

struct DeviceBuffer
{
    void* ptr = nullptr;
    ~DeviceBuffer()
    {
        if (ptr != nullptr)
        {
            cudaFree(ptr);
        }
    }
};

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::fprintf(stderr, "usage: %s ENGINE [--plugins LIB] [--shape NAME=AxBxCxD ...]\n", argv[0]);
        return 2;
    }
    std::string const enginePath = argv[1];
    std::string pluginPath;
    std::map<std::string, nvinfer1::Dims> shapes;
    for (int i = 2; i < argc; ++i)
    {
        std::string const arg = argv[i];
        if (arg == "--plugins" && i + 1 < argc)
        {
            pluginPath = argv[++i];
        }
        else if (arg == "--shape" && i + 1 < argc)
        {
            std::string const spec = argv[++i];
            size_t const eq = spec.find('=');
            nvinfer1::Dims dims{};
            if (eq == std::string::npos || !parseDims(spec.substr(eq + 1), dims))
            {
                std::fprintf(stderr, "error: bad --shape %s (expected NAME=1x3x256x256)\n", spec.c_str());
                return 2;
            }
            shapes[spec.substr(0, eq)] = dims;
        }
        else
        {
            std::fprintf(stderr, "error: unknown argument %s\n", arg.c_str());
            return 2;
        }
    }

    std::ifstream file(enginePath, std::ios::binary);
    if (!file)
    {
        std::fprintf(stderr, "error: cannot read %s\n", enginePath.c_str());
        return 1;
    }
    std::vector<char> const plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime)
    {
        std::fprintf(stderr, "error: cannot create the TensorRT runtime\n");
        return 1;
    }
    if (!pluginPath.empty() && runtime->getPluginRegistry().loadLibrary(pluginPath.c_str()) == nullptr)
    {
        std::fprintf(stderr, "error: cannot load plugin library %s\n", pluginPath.c_str());
        return 1;
    }
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine)
    {
        std::fprintf(stderr, "error: %s is not an engine for this GPU / TensorRT version\n", enginePath.c_str());
        return 1;
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context)
    {
        std::fprintf(stderr, "error: cannot create an execution context\n");
        return 1;
    }

    int32_t const count = engine->getNbIOTensors();
    for (int32_t i = 0; i < count; ++i)
    {
        char const* name = engine->getIOTensorName(i);
        if (engine->getTensorIOMode(name) != nvinfer1::TensorIOMode::kINPUT)
        {
            continue;
        }
        auto const found = shapes.find(name);
        nvinfer1::Dims const dims = found != shapes.end()
            ? found->second
            : engine->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kOPT);
        if (!context->setInputShape(name, dims))
        {
            std::fprintf(stderr, "error: shape %s rejected for input %s\n", format(dims).c_str(), name);
            return 1;
        }
    }

    cudaStream_t stream = nullptr;
    if (!check(cudaStreamCreate(&stream), "cudaStreamCreate"))
    {
        return 1;
    }
    std::vector<DeviceBuffer> buffers(static_cast<size_t>(count));
    for (int32_t i = 0; i < count; ++i)
    {
        char const* name = engine->getIOTensorName(i);
        nvinfer1::Dims const dims = context->getTensorShape(name);
        nvinfer1::DataType const type = engine->getTensorDataType(name);
        size_t const elements = static_cast<size_t>(volume(dims));
        size_t const bytes = elements * elementSize(type);
        if (!check(cudaMalloc(&buffers[i].ptr, bytes > 0 ? bytes : 1), "cudaMalloc"))
        {
            return 1;
        }
        if (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT)
        {
            std::vector<float> ramp(elements);
            for (size_t k = 0; k < elements; ++k)
            {
                ramp[k] = -1.f + 2.f * static_cast<float>(k % 1000) / 999.f;
            }
            if (type == nvinfer1::DataType::kHALF)
            {
                std::vector<__half> halves(elements);
                for (size_t k = 0; k < elements; ++k)
                {
                    halves[k] = __float2half(ramp[k]);
                }
                check(cudaMemcpy(buffers[i].ptr, halves.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
            }
            else if (type == nvinfer1::DataType::kFLOAT)
            {
                check(cudaMemcpy(buffers[i].ptr, ramp.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
            }
            else
            {
                check(cudaMemset(buffers[i].ptr, 0, bytes), "cudaMemset");
            }
        }
        if (!context->setTensorAddress(name, buffers[i].ptr))
        {
            std::fprintf(stderr, "error: cannot bind %s\n", name);
            return 1;
        }
    }

    if (!context->enqueueV3(stream) || !check(cudaStreamSynchronize(stream), "inference"))
    {
        std::fprintf(stderr, "error: inference failed\n");
        return 1;
    }

    for (int32_t i = 0; i < count; ++i)
    {
        char const* name = engine->getIOTensorName(i);
        if (engine->getTensorIOMode(name) != nvinfer1::TensorIOMode::kOUTPUT)
        {
            continue;
        }
        nvinfer1::Dims const dims = context->getTensorShape(name);
        nvinfer1::DataType const type = engine->getTensorDataType(name);
        size_t const elements = static_cast<size_t>(volume(dims));
        double sum = 0.0;
        double absSum = 0.0;
        if (type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF)
        {
            std::vector<char> host(elements * elementSize(type));
            check(cudaMemcpy(host.data(), buffers[i].ptr, host.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
            for (size_t k = 0; k < elements; ++k)
            {
                float const v = type == nvinfer1::DataType::kHALF
                    ? __half2float(reinterpret_cast<__half const*>(host.data())[k])
                    : reinterpret_cast<float const*>(host.data())[k];
                sum += v;
                absSum += v < 0 ? -v : v;
            }
        }
        std::printf("%s %s sum=%.6g mean|x|=%.6g\n", name, format(dims).c_str(), sum,
            elements ? absSum / static_cast<double>(elements) : 0.0);
    }
    cudaStreamDestroy(stream);
    return 0;
}
